"""The ``connection`` primitive: the hub's pairing code (URL + QR) and its paired browsers.

A pairing code is ``<relay public url>/hubs/<server id>/pairing#<BASE32(bundle)>``; the bundle
(hub identity key, signing key, one fresh one-time key, signature) is only in the fragment,
which never reaches the relay. A browser that opens an Olm session with the one-time key of a
code this hub displayed becomes paired (docs/security.md, "Pairing and admission"); each
pairing spends its code, and a fresh one is made and announced with ``connection_code_ready``.

Before the hub has registered with a relay there is no server id; the hub id stands in, so a
code still names this hub and pairing works on loopback.

The keys, sessions and allow-list live in ``botster.remote``; the Lua companion
(``connection.lua``) adds ``copy_to_clipboard``, which needs the ``tui`` primitive.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

from botster.hub.context import current_hub
from botster.lua.api import lua_api

__all__ = ["LUA"]

# Tried in order when no terminal UI is attached: (command, args).
_CLIPBOARD_TOOLS = (
    ("wl-copy", ()),
    ("xclip", ("-selection", "clipboard")),
    ("xsel", ("--clipboard", "--input")),
    ("pbcopy", ()),
)


def _remote() -> Any:
    from botster.remote.state import remote_for

    return remote_for(current_hub())


async def _code(fn: str, *, fresh: bool) -> Any:
    from botster.remote.olm import OlmError

    try:
        return await _remote().generate(fresh=fresh)
    except (OlmError, OSError) as e:
        return None, f"connection.{fn}: {e}"


@lua_api
async def generate() -> Any:
    """connection.generate() -> {url, qr_ascii, hub_id} | nil, err

    The hub's current pairing code, made on first use (the hub's Olm account is created then
    too). A new code is announced with the event ``connection_code_ready`` carrying the same
    table. Returns nil, err when the account cannot be read or stored.
    Example: ``local code = connection.generate(); log.info(code.url)``
    """
    return await _code("generate", fresh=False)


@lua_api
async def regenerate() -> Any:
    """connection.regenerate() -> {url, qr_ascii, hub_id} | nil, err

    A new pairing code with a fresh one-time key (the hub does this itself after each
    pairing); emits ``connection_code_ready``. Earlier codes stay valid until used or until
    16 newer ones were made.
    """
    return await _code("regenerate", fresh=True)


@lua_api
def get_url() -> str | None:
    """connection.get_url() -> string | nil: the current code's URL, nil before generate()."""
    code = _remote().code
    return code["url"] if code is not None else None


@lua_api
async def paired() -> Any:
    """connection.paired() -> {{browser_key, paired_at}...} | nil, err

    The browsers allowed in (their curve25519 keys, base64), oldest first; an empty list
    before the hub's account exists (asking does not create it).
    """
    from botster.remote.olm import OlmError

    remote = _remote()
    if not remote.loaded and not await current_hub().run_blocking(remote.olm.path.exists):
        return []  # no account yet: nobody paired, and asking does not create one
    try:
        olm = await remote.ready()
    except (OlmError, OSError) as e:
        return None, f"connection.paired: {e}"
    items = sorted(olm.paired.items(), key=lambda kv: kv[1].get("paired_at", 0))
    return [{"browser_key": k, "paired_at": v.get("paired_at")} for k, v in items]


@lua_api
async def revoke(browser_key: str) -> Any:
    """connection.revoke(browser_key) -> bool | nil, err

    Forgets a paired browser: its session and peer are closed and it must pair again with a
    new code. Returns false when the key was not paired.
    """
    from botster.remote.olm import OlmError

    try:
        return await _remote().revoke(browser_key)
    except (OlmError, OSError) as e:
        return None, f"connection.revoke: {e}"


@lua_api
async def _system_clipboard(text: str) -> Any:
    """Copies text with the first clipboard tool found; nil, err when there is none."""
    for tool, args in _CLIPBOARD_TOOLS:
        path = shutil.which(tool)
        if path is None:
            continue
        try:
            proc = await asyncio.create_subprocess_exec(
                path,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as e:
            return None, f"connection.copy_to_clipboard: {tool}: {e.strerror or e}"
        try:
            async with asyncio.timeout(5):
                _, err = await proc.communicate(text.encode())
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return None, f"connection.copy_to_clipboard: {tool} did not finish in 5 s"
        if proc.returncode == 0:
            return True
        return None, (
            f"connection.copy_to_clipboard: {tool} failed: "
            f"{err.decode(errors='replace').strip() or proc.returncode}"
        )
    return None, (
        "connection.copy_to_clipboard: no terminal UI is attached and no clipboard tool "
        "(wl-copy, xclip, xsel, pbcopy) is installed"
    )


LUA = {
    "generate": generate,
    "regenerate": regenerate,
    "get_url": get_url,
    "paired": paired,
    "revoke": revoke,
    "_system_clipboard": _system_clipboard,
}
WRONG_DOOR = {
    "get_code": "use connection.generate()",
    "copy": "use connection.copy_to_clipboard()",
}
