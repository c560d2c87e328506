"""The built browser app (web/, built by `make web` into botster/relay/static/)."""

import gzip
import json
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parent.parent / "botster" / "relay" / "static"

pytestmark = pytest.mark.skipif(
    not (STATIC / "index.html").exists(), reason="the web app is not built (make web)"
)


def test_app_is_small_and_has_its_pwa_files():
    """The built app's JS+CSS gzipped stays under 400 KB; manifest, worker and icons exist."""
    static = STATIC
    total = sum(len(gzip.compress(p.read_bytes())) for p in (static / "assets").iterdir())
    assert total < 400_000, total
    manifest = json.loads((static / "manifest.webmanifest").read_text())
    assert {i["sizes"] for i in manifest["icons"]} == {"192x192", "512x512"}
    sw = (static / "sw.js").read_text()
    assert "showNotification" in sw and "notificationclick" in sw
