"""The ``websocket`` primitive end to end: a real hub, real plugins, a loopback echo server.

Plugins record every callback in order (``seen``) and report the list once the connection
has ended, so each test asserts the whole life of a connection in one comparison.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import write_plugin
from tests.lua_prelude import assert_raised, report_raised
from tests.lua_prelude import plugin as lua_plugin
from tests.servers import LoopbackServer, free_port, http_server

# After tests.lua_prelude's helpers: `watch(tag, url, opts)` connects with callbacks that
# append to a list and report it as RESULT <tag> when the connection ends (on_close or
# on_error); `extra` adds callbacks' follow-ups, e.g. extra.on_open(id) runs after on_open is
# recorded.
HELPERS = """
local function watch(tag, url, opts, extra)
  opts, extra = opts or {}, extra or {}
  local seen, id = {}, nil
  local function finish()
    if extra.on_end then extra.on_end(id, seen) end
    report(tag, seen)
  end
  opts.on_open = function()
    seen[#seen + 1] = {"open"}
    if extra.on_open then extra.on_open(id, seen) end
  end
  opts.on_message = function(msg, is_binary)
    seen[#seen + 1] = {"message", msg, is_binary}
    if extra.on_message then extra.on_message(id, seen, msg, is_binary) end
  end
  opts.on_close = function(code, reason)
    seen[#seen + 1] = {"close", code, reason}
    finish()
  end
  opts.on_error = function(err)
    seen[#seen + 1] = {"error", err}
    finish()
  end
  id = websocket.connect(url, opts)
  assert(type(id) == "string" and id:match("^ws_%d+$"), "bad id " .. tostring(id))
  return id
end
"""


def plugin(body: str, **values: str) -> str:
    """A plugin source: the shared prelude, the values as constants, `HELPERS`, then `body`."""
    return lua_plugin(HELPERS + body, **values)


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    async with http_server() as srv:
        yield srv


async def test_text_binary_and_local_close(hub: Any, server: LoopbackServer) -> None:
    source = plugin(
        """
local bytes = {}
for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
local BIN = table.concat(bytes)
watch("echo", URL, {headers = {["X-Token"] = "abc"}}, {
  on_open = function(id)
    assert(websocket.send(id, "hello") == true)
    assert(websocket.send(id, BIN, {binary = true}) == true)
    assert(websocket.send(id, "héllo ✓") == true)
  end,
  on_message = function(id, seen, msg, is_binary)
    if is_binary then seen[#seen] = {"message", msg == BIN and "<256 bytes>" or "?", true} end
    if #seen == 4 then
      websocket.send(id, "headers")
    elseif #seen == 5 then
      assert(websocket.close(id) == true)
      assert(websocket.close(id) == true, "closing twice is fine")
      local ok, err = websocket.send(id, "late")
      seen[#seen + 1] = {"send while closing", ok == nil and err or "sent?"}
    end
  end,
  on_end = function(id, seen)
    local ok, err = websocket.send(id, "after")
    seen[#seen + 1] = {"send after close", ok == nil and err or "sent?"}
    ok, err = websocket.close(id)
    seen[#seen + 1] = {"close after close", ok == nil and err or "closed?"}
  end,
})
""",
        URL=server.ws_url(),
    )
    proc = await hub(plugins={"ws_echo": source})
    seen = await proc.result("echo")
    assert seen[:4] == [
        ["open"],
        ["message", "hello", False],
        ["message", "<256 bytes>", True],
        ["message", "héllo ✓", False],
    ]
    assert seen[4][0] == "message" and '"x-token": "abc"' in seen[4][1]
    assert seen[5:] == [
        ["send while closing", "websocket.send: ws_1: connection is closing"],
        ["close", 1000, ""],
        ["send after close", "websocket.send: ws_1: no such connection (closed, or never opened)"],
        [
            "close after close",
            "websocket.close: ws_1: no such connection (closed, or never opened)",
        ],
    ]
    await server.wait_ws_open(0)


async def test_server_close_delivers_code_and_reason(hub: Any, server: LoopbackServer) -> None:
    source = plugin(
        """
watch("server_close", URL, {}, {
  on_open = function(id) websocket.send(id, "close 4001 going away now") end,
})
watch("dropped", URL, {}, {
  on_open = function(id) websocket.send(id, "drop") end,
})
watch("too_big", URL, {}, {
  on_open = function(id) websocket.send(id, "big " .. (16 * 1024 * 1024 + 1)) end,
})
""",
        URL=server.ws_url(),
    )
    proc = await hub(plugins={"ws_server_close": source})
    assert await proc.result("server_close") == [["open"], ["close", 4001, "going away now"]]
    assert await proc.result("dropped") == [["open"], ["close", 1006, "connection lost"]]
    assert await proc.result("too_big") == [
        ["open"],
        ["error", "websocket: ws_3: message exceeds the 16 MiB limit"],
    ]


async def test_connection_failures_call_on_error(hub: Any, server: LoopbackServer) -> None:
    port = await free_port()
    async with http_server(tls=True) as tls:
        source = plugin(
            """
watch("refused", REFUSED)
watch("not_ws", NOT_WS)
watch("self_signed", SELF_SIGNED)
-- Closed before the handshake finished: on_close, never on_open.
local id = watch("early_close", HOLD)
assert(websocket.close(id) == true)
local ok, err = websocket.send(id, "x")
report("early_send", {ok = ok, err = err})
watch("tls_to_plain", TLS_TO_PLAIN)
""",
            REFUSED=f"ws://127.0.0.1:{port}/",
            NOT_WS=server.ws_url("/no-ws"),
            SELF_SIGNED=tls.ws_url(),
            HOLD=server.ws_url("/hold"),
            TLS_TO_PLAIN=server.ws_url().replace("ws://", "wss://"),
        )
        proc = await hub(plugins={"ws_failures": source})
        assert await proc.result("refused") == [
            [
                "error",
                f"websocket.connect: ws://127.0.0.1:{port}/: cannot connect to 127.0.0.1:{port}: "
                "connection refused (ECONNREFUSED)",
            ]
        ]
        assert await proc.result("not_ws") == [
            [
                "error",
                f"websocket.connect: {server.ws_url('/no-ws')}: the server refused the websocket "
                "upgrade (HTTP 404: Invalid response status)",
            ]
        ]
        (kind, err), *rest = await proc.result("self_signed")
        assert kind == "error" and rest == []
        assert err.startswith(f"websocket.connect: {tls.ws_url()}: TLS certificate verification")
        assert "self-signed certificate" in err
        assert await proc.result("early_close") == [
            ["close", 1000, "closed before the connection opened"]
        ]
        assert await proc.result("early_send") == {
            "err": "websocket.send: ws_4: no such connection (closed, or never opened)"
        }
        # OpenSSL's reason codes read as words, as for http ("wrong version number").
        (kind, err), *rest = await proc.result("tls_to_plain")
        assert kind == "error" and rest == []
        assert err.startswith(f"websocket.connect: {server.ws_url().replace('ws://', 'wss://')}: ")
        assert "TLS handshake failed: " in err and not re.search(r"[A-Z]{2,}_[A-Z]", err)
    assert tls.seen == []


WRONG_USE = {
    "http_url": (
        'websocket.connect("http://example.com/ws")',
        "websocket.connect: url: expected a ws:// or wss:// URL, got 'http://example.com/ws' "
        "(use ws:// or wss://)",
    ),
    "url_type": ("websocket.connect(42)", "websocket.connect: url: expected string, got number"),
    "unknown_key": (
        "websocket.connect(URL, {on_mesage = function() end})",
        "websocket.connect: opts: unknown key 'on_mesage' (known: headers, on_close, on_error, "
        "on_message, on_open)",
    ),
    "callback_type": (
        'websocket.connect(URL, {on_open = "yes"})',
        "websocket.connect: opts.on_open: expected function, got string",
    ),
    "msg_type": ('websocket.send("ws_1", 42)', "websocket.send: msg: expected string, got number"),
    "bad_utf8": (
        'websocket.send("ws_1", "\\255")',
        "websocket.send: msg: a text frame must be valid UTF-8 (pass {binary = true} to send "
        "bytes)",
    ),
    "send_opts": (
        'websocket.send("ws_1", "x", {binry = true})',
        "websocket.send: opts: unknown key 'binry' (known: binary)",
    ),
    "wrong_door": (
        "websocket.open(URL)",
        "websocket.open does not exist; use websocket.connect(url, {on_message = fn, ...})",
    ),
}


async def test_wrong_use_raises_and_unknown_ids_return_nil(
    hub: Any, server: LoopbackServer
) -> None:
    source = plugin(
        report_raised(WRONG_USE)
        + """
timer.after(0, function()
  local ok, err = websocket.send("ws_999", "x")
  report("unknown_send", {ok = ok, err = err})
  ok, err = websocket.close("ws_999")
  report("unknown_close", {ok = ok, err = err})
end)
""",
        URL=server.ws_url(),
    )
    proc = await hub(plugins={"ws_wrong_use": source})
    await assert_raised(proc, WRONG_USE)
    assert await proc.result("unknown_send") == {
        "err": "websocket.send: ws_999: no such connection (closed, or never opened)"
    }
    assert await proc.result("unknown_close") == {
        "err": "websocket.close: ws_999: no such connection (closed, or never opened)"
    }
    assert server.seen == []


async def test_live_connections_per_plugin_are_capped(hub: Any) -> None:
    port = await free_port()
    source = plugin(
        """
local ids = {}
for i = 1, 64 do ids[i] = websocket.connect(URL, {}) end
local id, err = websocket.connect(URL, {})
report("cap", {count = #ids, id = id, err = err})
""",
        URL=f"ws://127.0.0.1:{port}/",
    )
    proc = await hub(plugins={"ws_cap": source})
    assert await proc.result("cap") == {
        "count": 64,
        "err": "websocket.connect: ws_cap already has 64 open connections; "
        "close some with websocket.close(id)",
    }


async def test_unloading_a_plugin_closes_its_sockets_silently(
    hub: Any, server: LoopbackServer, git_repo: Any
) -> None:
    first = plugin(
        """
watch("stale", URL, {}, {on_open = function() report("opened", true) end})
""",
        URL=server.ws_url(),
    )
    proc = await hub(plugins={"ws_unload": first})
    await proc.result("opened")
    mark = proc.mark()
    second = plugin(
        """
watch("second", URL, {}, {on_open = function(id) websocket.send(id, "close 4000 done") end})
""",
        URL=server.ws_url(),
    )
    write_plugin(git_repo, "ws_unload", second)
    await proc.wait_for("plugin 'ws_unload' reloaded", since=mark)
    assert await proc.result("second", since=mark) == [["open"], ["close", 4000, "done"]]
    await server.wait_ws_open(0)  # the old version's socket was closed by the hub too
    assert "RESULT stale" not in proc.log


async def test_open_socket_is_closed_at_shutdown(hub: Any, server: LoopbackServer) -> None:
    source = plugin(
        """
watch("stale", URL, {}, {on_open = function() report("opened", true) end})
""",
        URL=server.ws_url(),
    )
    proc = await hub(plugins={"ws_shutdown": source})
    await proc.result("opened")
    await server.wait_ws_open(1)
    await proc.stop_and_verify()  # exit 0, nothing unexpected in the log
    await server.wait_ws_open(0)
    assert "RESULT stale" not in proc.log
