"""The built browser app (web/, built by `make web` into botster/relay/static/)."""

import gzip
import json
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parent.parent / "botster" / "relay" / "static"

_built = pytest.mark.skipif(
    not (STATIC / "index.html").exists(), reason="the web app is not built (make web)"
)


@_built
def test_app_is_small_and_has_its_pwa_files():
    """The built app's JS+CSS gzipped stays under 400 KB; manifest, worker and icons exist."""
    static = STATIC
    total = sum(len(gzip.compress(p.read_bytes())) for p in (static / "assets").iterdir())
    assert total < 400_000, total
    manifest = json.loads((static / "manifest.webmanifest").read_text())
    assert {i["sizes"] for i in manifest["icons"]} == {"192x192", "512x512"}
    sw = (static / "sw.js").read_text()
    assert "showNotification" in sw and "notificationclick" in sw


async def test_make_run_prints_a_pairing_link_and_qr(hub):
    """`make run` (botster.demo) shows a newcomer the link and QR code to open in a browser."""
    from botster.demo import _pairing_text
    from botster.remote.bundle import parse_pairing_url
    from tests.test_socket import socket_of

    proc = await hub()
    text = await _pairing_text(str(socket_of(proc)))
    url = text.split("relay): ")[1].split()[0]
    _, _, bundle = parse_pairing_url(url)  # a valid, signed bundle in the fragment
    assert "/hubs/" in url and "#" in url and bundle.one_time_key
    assert "█" in text or "▀" in text or "▄" in text  # the QR code, in half blocks
    # Let the hub finish joining its embedded relay before the fixture stops it.
    await proc.wait_for(r"relay: hub \w+ online", timeout=30)
