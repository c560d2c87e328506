"""The ``update`` primitive end to end: a real hub asks a loopback package index.

The index is a real aiohttp server on 127.0.0.1 speaking the two PyPI APIs the primitive
uses: the JSON metadata (``/pypi/botster/json``) and the simple index (``/simple/botster/``)
with wheels built on the fly. A plugin exposes ``update.check``/``update.install`` as hub
commands so the test drives them over the hub socket, one scenario after another.

``install`` never touches the project's environment: the hub runs with ``PIP_TARGET`` (pip's
own environment form of ``--target``) pointing at a throwaway directory, and
``PIP_CONFIG_FILE`` pointing at nothing, so pip installs there or nowhere.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.metadata
import io
import json
import os
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from packaging.version import Version

from botster.primitives import update as update_module
from botster.transports.client import HubConnection
from tests.servers import free_port

CURRENT = importlib.metadata.version("botster")

PLUGIN = """
local commands = require("lib.commands")
local function pack(value, err) return {value = value, err = err} end
commands.register("upd.check", function(args)
  if args.index ~= nil then assert(config.set("update_index", args.index)) end
  return pack(update.check())
end)
commands.register("upd.install", function() return pack(update.install()) end)
local ok, err = pcall(update.check, "extra")
log.info("RESULT misuse " .. json.encode({ok = ok, err = tostring(err):gsub("^[^:]*:%d+: ", "")}))
"""


@dataclass
class Index:
    """A loopback PyPI-compatible index; the test sets what it serves."""

    base: str = ""
    metadata: bytes = b""  # the body of /pypi/botster/json
    files: dict[str, bytes] = field(default_factory=dict)  # wheel name -> bytes
    gate: asyncio.Event | None = None  # when set, /simple/botster/ waits for it
    simple_hits: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def serve_version(self, version: str) -> None:
        self.metadata = json.dumps({"info": {"name": "botster", "version": version}}).encode()

    async def wait_simple_hit(self, timeout: float = 20.0) -> None:
        async def scan() -> None:
            while self.simple_hits == 0:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(scan(), timeout)


@pytest.fixture
async def index() -> AsyncIterator[Index]:
    idx = Index()

    async def metadata(request: web.Request) -> web.Response:
        return web.Response(body=idx.metadata, content_type="application/json")

    async def simple(request: web.Request) -> web.Response:
        idx.simple_hits += 1
        idx.arrived.set()
        if idx.gate is not None:
            await idx.gate.wait()
        links = "".join(
            f'<a href="/files/{name}#sha256={hashlib.sha256(data).hexdigest()}">{name}</a>\n'
            for name, data in idx.files.items()
        )
        html = f"<!DOCTYPE html><html><body>\n{links}</body></html>\n"
        return web.Response(text=html, content_type="text/html")

    async def files(request: web.Request) -> web.Response:
        data = idx.files.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/pypi/botster/json", metadata)
    app.router.add_get("/simple/botster/", simple)
    app.router.add_get("/files/{name}", files)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    idx.base = f"http://127.0.0.1:{port}"
    yield idx
    if idx.gate is not None:
        idx.gate.set()
    await runner.cleanup()


def wheel(version: str) -> tuple[str, bytes]:
    """A minimal pure-Python wheel of botster `version` (one module, no dependencies)."""
    dist = f"botster-{version}.dist-info"
    contents = {
        "botster/__init__.py": f'VERSION = "{version}"\n'.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: botster\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: botster-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    contents[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
    return f"botster-{version}-py3-none-any.whl", buf.getvalue()


def socket_of(proc: Any) -> Path:
    entry = next((Path(proc.env["BOTSTER_RUNTIME_DIR"]) / "hubs").glob("*.json"))
    return Path(json.loads(entry.read_text())["socket"])


@pytest.fixture
def pip_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PIP_* settings from the machine (find-links, extra indexes) reach the hub's pip."""
    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)


async def start(hub: Any, index: Index, tmp_path: Path) -> tuple[Any, HubConnection, Path]:
    target = tmp_path / "pip-target"
    env = {"PIP_TARGET": str(target), "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1"}
    proc = await hub(plugins={"upd": PLUGIN}, config={"update_index": index.base}, env=env)
    conn = await HubConnection.connect(socket_of(proc), "test")
    return proc, conn, target


async def test_check_compares_the_index_with_the_running_version(
    hub: Any, index: Index, tmp_path: Path
) -> None:
    proc, conn, _ = await start(hub, index, tmp_path)
    assert await proc.result("misuse") == {
        "ok": False,
        "err": "update.check: expected at most 0 arguments, got 1",
    }
    release = ".".join(str(n) for n in Version(CURRENT).release)
    bumped = release.rsplit(".", 1)[0] + "." + str(int(release.rsplit(".", 1)[-1]) + 1)
    newer = ["99.0.0", f"{release}.post1", f"{bumped}.dev0", "1!0.0.1"]
    not_newer = [CURRENT, f"{release}.0", "0.0.1", f"{release}rc1", f"{release}.dev7"]
    for version in newer + not_newer:
        index.serve_version(version)
        assert await conn.request("upd.check") == {
            "value": {
                "available": version in newer,
                "version": version,
                "current": CURRENT,
                "index": index.base,
            }
        }, version
    index.serve_version("2.0.0")
    trailing = await conn.request("upd.check", {"index": index.base + "/"})
    assert trailing["value"]["index"] == index.base

    url = f"{index.base}/pypi/botster/json"
    index.metadata = b"{not json"
    err = (await conn.request("upd.check"))["err"]
    assert err.startswith(f"update.check: {url}: the index sent malformed JSON (Expecting")
    index.metadata = b'{"info": {"name": "botster"}}'
    assert await conn.request("upd.check") == {
        "err": f"update.check: {url}: the index's answer has no info.version"
    }
    index.metadata = b'["not", "an", "object"]'
    assert await conn.request("upd.check") == {
        "err": f"update.check: {url}: the index's answer has no info.version"
    }
    index.serve_version("not a version")
    assert await conn.request("upd.check") == {
        "err": "update.check: the index reports 'not a version', which is not a valid version"
    }

    elsewhere = index.base + "/mirror"
    assert await conn.request("upd.check", {"index": elsewhere}) == {
        "err": f"update.check: {elsewhere}/pypi/botster/json: HTTP 404 "
        "(botster is not on this index?)"
    }
    port = await free_port()
    dead = f"http://127.0.0.1:{port}"
    assert await conn.request("upd.check", {"index": dead}) == {
        "err": f"update.check: cannot reach {dead}/pypi/botster/json: cannot connect to "
        f"127.0.0.1:{port}: connection refused (ECONNREFUSED)"
    }
    assert await conn.request("upd.check", {"index": "ftp://example.invalid"}) == {
        "err": "update.check: config update_index must be an http:// or https:// URL without "
        'query or fragment, got "ftp://example.invalid"'
    }
    assert await conn.request("upd.check", {"index": 5}) == {
        "err": "update.check: config update_index must be an http:// or https:// URL without "
        "query or fragment, got 5"
    }
    await conn.close()


async def test_install_failure_returns_the_tail_of_pips_output(
    hub: Any, index: Index, tmp_path: Path, pip_env: None
) -> None:
    proc, conn, target = await start(hub, index, tmp_path)
    index.serve_version("99.0.0")  # announced, but the simple index serves no files
    result = await conn.request("upd.install")
    err = result["err"]
    assert err.startswith("update.install: pip failed (exit code 1):\n"), err
    assert "No matching distribution found for botster==99.0.0" in err.splitlines()[-1], err
    assert len(err.splitlines()) <= 1 + update_module.TAIL_LINES
    assert index.simple_hits >= 1
    assert not target.exists() or not any(target.iterdir())
    await proc.wait_for(
        r"WARNING update +update\.install: pip failed with exit code 1: ERROR: No matching"
    )
    await conn.close()


async def test_install_success_into_a_throwaway_target_and_one_at_a_time(
    hub: Any, index: Index, tmp_path: Path, pip_env: None
) -> None:
    proc, conn, target = await start(hub, index, tmp_path)

    # Nothing newer: pip is not run, nothing is downgraded.
    index.serve_version(CURRENT)
    assert await conn.request("upd.install") == {
        "value": {"success": True, "version": CURRENT, "previous": CURRENT, "updated": False}
    }
    assert index.simple_hits == 0

    name, data = wheel("99.0.0")
    index.files[name] = data
    index.serve_version("99.0.0")
    index.gate = asyncio.Event()  # hold pip at the simple index
    first = asyncio.create_task(conn.request("upd.install"))
    await index.wait_simple_hit()
    assert await conn.request("upd.install") == {
        "err": "update.install: an install is already running"
    }
    index.gate.set()
    assert await asyncio.wait_for(first, 60) == {
        "value": {"success": True, "version": "99.0.0", "previous": CURRENT, "updated": True}
    }
    assert (target / "botster-99.0.0.dist-info").is_dir()
    assert (target / "botster" / "__init__.py").read_text() == 'VERSION = "99.0.0"\n'
    # The project's environment is untouched, and the running hub still runs CURRENT.
    assert importlib.metadata.version("botster") == CURRENT
    check = await conn.request("upd.check")
    assert check["value"]["available"] is True and check["value"]["current"] == CURRENT
    await proc.wait_for(r"update\.install: installed botster 99\.0\.0; restart the hub")
    await conn.close()


VERSIONS = [
    "0.9",
    "1.0.dev0",
    "1.0.dev1",
    "1.0a1.dev1",
    "1.0a1",
    "1.0a2",
    "1.0b1",
    "1.0rc1",
    "1.0c2",
    "1.0",
    "1.0.0",
    "1.0+local.1",
    "1.0+local.2",
    "1.0+local.a",
    "1.0.post1.dev0",
    "1.0.post1",
    "1.0-2",
    "1.0.1",
    "1.1.dev0",
    "v1.2",
    "1.10",
    "2!0.1",
]


def test_builtin_version_order_matches_packaging() -> None:
    fallback = sorted(VERSIONS, key=update_module._fallback_key)
    reference = sorted(VERSIONS, key=Version)
    assert fallback == reference
    for a in VERSIONS:
        for b in VERSIONS:
            same = update_module._fallback_key(a) == update_module._fallback_key(b)
            assert same == (Version(a) == Version(b)), (a, b)
    with pytest.raises(ValueError):
        update_module._fallback_key("not a version")
