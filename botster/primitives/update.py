"""The ``update`` primitive: is a newer Botster published, and installing it.

Owns the update check (one GET of the package's JSON metadata from a PyPI-compatible index)
and the install (``pip install --upgrade`` of exactly that version into the environment the
hub runs from, as a subprocess). The index comes from the config key ``update_index``
(default ``https://pypi.org``): ``check`` reads ``<index>/pypi/botster/json`` and ``install``
gives pip ``<index>/simple``. Neither ever blocks the event loop: HTTP is aiohttp, pip is an
asyncio subprocess whose output is read as it comes and kept as a bounded tail.

"current" is the version this hub process runs, read once when the hub starts: an install
changes what the next start runs, not the running hub, so ``check`` keeps reporting the update
as available until the hub is restarted. Versions compare by PEP 440 (``packaging`` when it is
installed, else a small built-in comparison of the same rules). Only one install runs at a
time in a hub; once started it runs to the end even if the plugin that asked is unloaded (a
half-done pip run is worse than a finished one), and is stopped only by the hub shutting down.
Like ``http``, proxy variables from the environment are not used for the check; pip applies
its own configuration.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.metadata
import json
import logging
import re
import sys
from typing import Any

import aiohttp
from yarl import URL

from botster.hub import net
from botster.hub.context import HubContext
from botster.lua.api import lua_api

try:  # not a declared dependency; present in most environments (pip vendors its own copy)
    from packaging.version import InvalidVersion
    from packaging.version import Version as _Version
except ImportError:  # pragma: no cover - depends on the environment
    _Version = None  # type: ignore[assignment,misc]
    InvalidVersion = ValueError  # type: ignore[assignment,misc]

__all__ = ["LUA", "WRONG_DOOR", "version_key"]

log = logging.getLogger("update")

PACKAGE = "botster"
DEFAULT_INDEX = "https://pypi.org"
CHECK_TIMEOUT = 30.0  # seconds for the metadata request
MAX_METADATA = 32 << 20  # bytes of JSON metadata
INSTALL_TIMEOUT = 900.0  # seconds pip may run
TAIL_LINES = 25  # lines of pip output kept for the error message
MAX_LINE = 500  # characters kept of one line of pip output
TERMINATE_GRACE = 5.0  # seconds pip gets to stop on SIGTERM at hub shutdown


def _running_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


# Read once, when the hub imports its primitives: the version this process runs.
_RUNNING = _running_version()


class _State:
    def __init__(self, hub: HubContext) -> None:
        self.install_task: asyncio.Task[Any] | None = None


# Versions ---------------------------------------------------------------------------------

_PEP440 = re.compile(
    r"""^\s*v?
    (?:(?P<epoch>\d+)!)?
    (?P<release>\d+(?:\.\d+)*)
    (?:[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>\d+)?)?
    (?:-(?P<post_n1>\d+)|[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>\d+)?)?
    (?:[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>\d+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    \s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}


def _fallback_key(text: str) -> tuple[Any, ...]:
    """PEP 440 ordering without ``packaging`` (the same rules as its ``_cmpkey``).

    Raises:
        ValueError: `text` is not a PEP 440 version.
    """
    m = _PEP440.match(text)
    if m is None:
        raise ValueError(f"invalid version: {text!r}")
    release = [int(p) for p in m["release"].split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    has_post = m["post_n1"] is not None or m["post_l"] is not None
    if m["pre_l"] is not None:
        pre: tuple[int, ...] = (0, _PRE_RANK[m["pre_l"].lower()], int(m["pre_n"] or 0))
    elif m["dev_l"] is not None and not has_post:
        pre = (-1,)  # 1.0.dev1 sorts before 1.0a1
    else:
        pre = (1,)
    post = (0, int(m["post_n1"] or m["post_n2"] or 0)) if has_post else (-1,)
    dev = (0, int(m["dev_n"] or 0)) if m["dev_l"] is not None else (1,)
    local: tuple[Any, ...] = (-1,)
    if m["local"]:
        parts = re.split(r"[-_.]", m["local"].lower())
        local = (0, *((1, int(p), "") if p.isdigit() else (0, 0, p) for p in parts))
    return (int(m["epoch"] or 0), tuple(release), pre, post, dev, local)


def version_key(text: str) -> Any:
    """A sort key for a PEP 440 version string.

    Raises:
        ValueError: `text` is not a valid version.
    """
    if _Version is not None:
        try:
            return _Version(text)
        except InvalidVersion as e:
            raise ValueError(str(e)) from None
    return _fallback_key(text)


# Reaching the index -----------------------------------------------------------------------


def _index(hub: HubContext, fname: str) -> tuple[str, None] | tuple[None, str]:
    """The configured index URL without a trailing slash, or the reason it is unusable."""
    value = hub.config.data.get("update_index", DEFAULT_INDEX)
    parsed = None
    if isinstance(value, str):
        try:
            parsed = URL(value)
        except (ValueError, TypeError):
            parsed = None
    if (
        parsed is None
        or parsed.scheme not in ("http", "https")
        or not parsed.host
        or parsed.query_string
        or parsed.fragment
    ):
        return None, (
            f"{fname}: config update_index must be an http:// or https:// URL without query "
            f"or fragment, got {json.dumps(value)}"
        )
    return str(value).rstrip("/"), None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"bad response: {exc.message}"
    return net.reason(exc, CHECK_TIMEOUT)


async def _latest(fname: str, index: str) -> tuple[str, None] | tuple[None, str]:
    """The newest version the index lists for the package, or why it is not known."""
    url = f"{index}/pypi/{PACKAGE}/json"
    try:
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT),
        ) as session:
            async with session.get(url, headers={"Accept": "application/json"}) as resp:
                if resp.status != 200:
                    hint = f" ({PACKAGE} is not on this index?)" if resp.status == 404 else ""
                    return None, f"{fname}: {url}: HTTP {resp.status}{hint}"
                body = bytearray()
                async for chunk in resp.content.iter_any():
                    body += chunk
                    if len(body) > MAX_METADATA:
                        return None, f"{fname}: {url}: metadata over {MAX_METADATA >> 20} MiB"
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return None, f"{fname}: cannot reach {url}: {_reason(e)}"
    try:
        data = json.loads(bytes(body))
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"{fname}: {url}: the index sent malformed JSON ({e})"
    info = data.get("info") if isinstance(data, dict) else None
    version = info.get("version") if isinstance(info, dict) else None
    if not isinstance(version, str) or not version:
        return None, f"{fname}: {url}: the index's answer has no info.version"
    return version, None


async def _compare(fname: str, index: str) -> tuple[dict[str, Any], None] | tuple[None, str]:
    """{available, version, current, index}, or why the comparison cannot be made."""
    if _RUNNING is None:
        return None, f"{fname}: cannot tell which version runs: {PACKAGE} is not installed"
    latest, err = await _latest(fname, index)
    if latest is None:
        return None, err or f"{fname}: no version"
    try:
        latest_key = version_key(latest)
    except ValueError:
        return None, f"{fname}: the index reports {latest!r}, which is not a valid version"
    try:
        running_key = version_key(_RUNNING)
    except ValueError:
        return None, f"{fname}: the running version {_RUNNING!r} is not a valid version"
    newer = bool(latest_key > running_key)
    return {"available": newer, "version": latest, "current": _RUNNING, "index": index}, None


# Installing -------------------------------------------------------------------------------


async def _collect(stream: asyncio.StreamReader, tail: collections.deque[str]) -> None:
    """Reads pip's output to the end, keeping the last lines (each cut to MAX_LINE)."""
    pending = b""
    while chunk := await stream.read(64 << 10):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            tail.append(line.decode("utf-8", "replace").rstrip("\r")[:MAX_LINE])
        if len(pending) > 64 << 10:  # one huge line: keep its start, drop the rest
            tail.append(pending[:MAX_LINE].decode("utf-8", "replace"))
            pending = b""
    if pending:
        tail.append(pending.decode("utf-8", "replace").rstrip("\r")[:MAX_LINE])


async def _stop_pip(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        async with asyncio.timeout(TERMINATE_GRACE):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _install(hub: HubContext) -> tuple[Any, ...] | dict[str, Any]:
    index, err = _index(hub, "update.install")
    if index is None:
        return None, err
    found, err = await _compare("update.install", index)
    if found is None:
        return None, err
    current, latest = found["current"], found["version"]
    if not found["available"]:
        return {"success": True, "version": current, "previous": current, "updated": False}
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--upgrade",
        "--no-input",
        "--disable-pip-version-check",
        "--index-url",
        f"{index}/simple",
        f"{PACKAGE}=={latest}",
    ]
    log.info("update.install: %s -> %s: %s", current, latest, " ".join(cmd))
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as e:
        return None, f"update.install: cannot run {sys.executable}: {net.os_reason(e)}"
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        async with asyncio.timeout(INSTALL_TIMEOUT):
            assert proc.stdout is not None
            await _collect(proc.stdout, tail)
            code = await proc.wait()
    except TimeoutError:
        await _stop_pip(proc)
        return None, f"update.install: pip did not finish within {INSTALL_TIMEOUT:g} s"
    except asyncio.CancelledError:
        log.warning("update.install: the hub is stopping; stopping pip (pid %s)", proc.pid)
        await _stop_pip(proc)
        raise
    output = "\n".join(line for line in tail if line.strip())
    if code != 0:
        last = output.rsplit("\n", 1)[-1]
        log.warning("update.install: pip failed with exit code %s: %s", code, last)
        return None, f"update.install: pip failed (exit code {code}):\n{output}"
    log.info("update.install: installed %s %s; restart the hub to run it", PACKAGE, latest)
    return {"success": True, "version": latest, "previous": current, "updated": True}


# Lua-facing -------------------------------------------------------------------------------


@lua_api
async def check(hub: HubContext) -> Any:
    """update.check() -> {available, version, current, index} | nil, err

    Asks the package index whether a newer Botster is published. Suspends only the calling
    task. The index is the config key `update_index` (default: `"https://pypi.org"`; any
    PyPI-compatible index); the request is `GET <index>/pypi/botster/json` with a 30 s
    timeout.

    Returns a table:
    * `available`: true when `version` is newer than `current` (PEP 440 ordering).
    * `version`: the newest version on the index (its `info.version`).
    * `current`: the version this hub runs (an install takes effect at the next start, so
      `available` stays true until the hub is restarted).
    * `index`: the index that was asked.

    Returns `nil, err` when the index cannot be reached (`"update.check: cannot reach
    https://pypi.org/pypi/botster/json: cannot resolve host pypi.org (...)"`), answers with an
    HTTP error, sends malformed JSON or no version, or `update_index` is not an http(s) URL.
    Raises only when called with arguments.

    ```lua
    local u, err = update.check()
    if not u then log.warn(err)
    elseif u.available then log.info("Botster " .. u.version .. " is out") end
    ```
    """
    index, err = _index(hub, "update.check")
    if index is None:
        return None, err
    found, err = await _compare("update.check", index)
    if found is None:
        return None, err
    return found


@lua_api
async def install(hub: HubContext) -> Any:
    """update.install() -> {success = true, version, previous, updated} | nil, err

    Installs the newest Botster from the index into the Python environment the hub runs
    from: checks like `update.check`, then, if a newer version is published, runs
    `<python> -m pip install --upgrade --index-url <index>/simple botster==<version>` as a
    subprocess. Suspends only the calling task; pip may take a while. The running hub is not
    replaced: restart it to run the new version.

    Returns `{success = true, version, previous, updated}`: `version` is the version now
    installed, `previous` the one this hub runs, `updated` false when nothing newer was
    published (pip is not run, nothing is ever downgraded).
    Returns `nil, err` when the check fails (see `update.check`), another install is already
    running in this hub, or pip fails; pip's error then ends the message with the last lines
    of its output (`"update.install: pip failed (exit code 1):\\n...No matching
    distribution found for botster==2.0.0"`). Once started, an install finishes even if the
    calling plugin is unloaded; only the hub stopping interrupts it.
    Raises only when called with arguments.

    ```lua
    local r, err = update.install()
    if r and r.updated then log.info("installed " .. r.version .. "; restart the hub")
    elseif not r then log.warn(err) end
    ```
    """
    state = hub.state(_State)
    if state.install_task is not None and not state.install_task.done():
        return None, "update.install: an install is already running"
    task = hub.spawn(_install(hub), name="update.install", owner="hub")
    state.install_task = task
    return await asyncio.shield(task)


LUA = {"check": check, "install": install}
WRONG_DOOR = {
    "check_for_updates": "use update.check()",
    "available": "use update.check(); its result has `available`",
    "latest": "use update.check(); its result has `version`",
    "version": "use update.check(); its result has `current` and `version`",
    "upgrade": "use update.install()",
    "apply": "use update.install()",
    "download": "use update.install()",
}
