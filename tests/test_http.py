"""The ``http`` primitive end to end: a real hub process, real plugins, a loopback server.

The positional shortcuts and ``http.request`` share one implementation, so most scenarios
run through both forms with the ``form`` parameter ("sync" = ``http.get`` and friends,
"async" = ``http.request`` with a callback). Plugins report with ``RESULT <tag> <json>``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import write_plugin
from tests.lua_prelude import assert_raised, report_raised
from tests.lua_prelude import plugin as lua_plugin
from tests.servers import LoopbackServer, free_port, http_server

FORMS = ["sync", "async"]

# After tests.lua_prelude's helpers: `call` runs one request through either form and hands
# (resp, err) to `done`; `summary` makes a response reportable.
HELPERS = """
local function summary(resp, err)
  if not resp then return {err = err} end
  return {status = resp.status, body = resp.body, headers = resp.headers}
end
local function call(form, method, url, body, headers, done)
  if form == "sync" then
    local f = http[string.lower(method)]
    if method == "GET" or method == "DELETE" then return done(f(url, headers)) end
    return done(f(url, body, headers))
  end
  local opts = {method = method, url = url, headers = headers}
  if type(body) == "table" then opts.json = body elseif body ~= nil then opts.body = body end
  local id = http.request(opts, done)
  assert(type(id) == "string" and id:match("^http_%d+$"), "bad request id " .. tostring(id))
end
"""


def plugin(body: str, **values: str) -> str:
    """A plugin source: the shared prelude, the values as constants, `HELPERS`, then `body`."""
    return lua_plugin(HELPERS + body, **values)


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    async with http_server() as srv:
        yield srv


@pytest.mark.parametrize("form", FORMS)
async def test_methods_send_headers_and_bodies(hub: Any, server: LoopbackServer, form: str) -> None:
    source = plugin(
        """
timer.after(0, function()
  local hdrs = {["X-Test"] = "hello", Accept = "application/json"}
  call(FORM, "GET", URL .. "?q=1", nil, hdrs, function(r, e) report("GET", summary(r, e)) end)
  call(FORM, "POST", URL, "raw body", {["Content-Type"] = "text/plain"},
    function(r, e) report("POST", summary(r, e)) end)
  call(FORM, "PUT", URL, {name = "botster", n = 3, list = {1, 2}}, nil,
    function(r, e) report("PUT", summary(r, e)) end)
  call(FORM, "DELETE", URL, nil, nil, function(r, e) report("DELETE", summary(r, e)) end)
end)
""",
        FORM=form,
        URL=server.url("/echo"),
    )
    proc = await hub(plugins={"http_methods": source})

    get = await proc.result("GET")
    assert get["status"] == 200 and "err" not in get
    echoed = json.loads(get["body"])
    assert echoed["method"] == "GET" and echoed["query"] == {"q": "1"}
    assert echoed["headers"]["x-test"] == "hello"
    assert echoed["headers"]["accept"] == "application/json"
    assert get["headers"]["content-type"].startswith("application/json")
    assert all(name == name.lower() for name in get["headers"])

    post = json.loads((await proc.result("POST"))["body"])
    assert post["method"] == "POST" and post["body"] == "raw body"
    assert post["headers"]["content-type"] == "text/plain"

    put = json.loads((await proc.result("PUT"))["body"])
    assert put["method"] == "PUT"
    assert put["headers"]["content-type"] == "application/json"
    assert json.loads(put["body"]) == {"name": "botster", "n": 3, "list": [1, 2]}

    delete = await proc.result("DELETE")
    assert delete["status"] == 200 and json.loads(delete["body"])["method"] == "DELETE"


@pytest.mark.parametrize("form", FORMS)
async def test_binary_body_round_trip(hub: Any, server: LoopbackServer, form: str) -> None:
    source = plugin(
        """
timer.after(0, function()
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  local data = string.rep(table.concat(bytes), 4)
  call(FORM, "POST", URL, data, {["Content-Type"] = "application/octet-stream"},
    function(resp, err)
      report("binary", {err = err, same = resp and resp.body == data, len = resp and #resp.body})
    end)
end)
""",
        FORM=form,
        URL=server.url("/raw"),
    )
    proc = await hub(plugins={"http_binary": source})
    assert await proc.result("binary") == {"same": True, "len": 1024}
    assert server.seen[-1]["body"] == bytes(range(256)) * 4


@pytest.mark.parametrize("form", FORMS)
async def test_non_2xx_statuses_and_repeated_headers_are_results(
    hub: Any, server: LoopbackServer, form: str
) -> None:
    source = plugin(
        """
local function reporter(tag) return function(r, e) report(tag, summary(r, e)) end end
timer.after(0, function()
  call(FORM, "GET", BASE .. "/status/404", nil, nil, reporter("404"))
  call(FORM, "POST", BASE .. "/status/503", "x", nil, reporter("503"))
  call(FORM, "GET", BASE .. "/headers", nil, nil, reporter("hdrs"))
end)
""",
        FORM=form,
        BASE=server.base,
    )
    proc = await hub(plugins={"http_status": source})
    r404 = await proc.result("404")
    assert (r404["status"], r404["body"]) == (404, "status 404")
    r503 = await proc.result("503")
    assert (r503["status"], r503["body"]) == (503, "status 503")
    hdrs = (await proc.result("hdrs"))["headers"]
    assert hdrs["x-multi"] == "a, b"
    assert hdrs["x-single"] == "one"


@pytest.mark.parametrize("form", FORMS)
async def test_transport_failures_return_nil_and_message(
    hub: Any, server: LoopbackServer, form: str
) -> None:
    port = await free_port()
    async with http_server(tls=True) as tls:
        source = plugin(
            """
timer.after(0, function()
  local function check(tag, url)
    call(FORM, "GET", url, nil, nil, function(resp, err)
      report(tag, {resp = resp ~= nil, err = err})
    end)
  end
  check("refused", REFUSED)
  check("self_signed", SELF_SIGNED)
  check("tls_to_plain", TLS_TO_PLAIN)
  check("too_big", TOO_BIG)
end)
""",
            FORM=form,
            REFUSED=f"http://127.0.0.1:{port}/x",
            SELF_SIGNED=tls.url("/echo"),
            TLS_TO_PLAIN=server.url("/echo").replace("http://", "https://"),
            TOO_BIG=server.url("/huge"),
        )
        proc = await hub(plugins={"http_failures": source})
        fname = "http.get" if form == "sync" else "http.request"

        refused = await proc.result("refused")
        assert refused == {
            "resp": False,
            "err": f"{fname}: http://127.0.0.1:{port}/x: cannot connect to 127.0.0.1:{port}: "
            "connection refused (ECONNREFUSED)",
        }
        self_signed = await proc.result("self_signed")
        assert self_signed["resp"] is False
        assert self_signed["err"].startswith(f"{fname}: {tls.url('/echo')}: ")
        assert "TLS certificate verification failed: self-signed certificate" in self_signed["err"]
        plain = await proc.result("tls_to_plain")
        assert plain["resp"] is False
        assert "TLS handshake failed" in plain["err"]
        too_big = await proc.result("too_big")
        assert too_big["resp"] is False
        assert too_big["err"] == (
            f"{fname}: {server.url('/huge')}: response body of {100 << 20} bytes exceeds "
            "the 64 MiB limit"
        )
    # The self-signed server never saw a request: verification failed in the handshake.
    assert tls.seen == []


async def test_request_timeout(hub: Any, server: LoopbackServer) -> None:
    source = plugin(
        """
http.request({url = URL, timeout = 0.2}, function(resp, err)
  report("timeout", {resp = resp ~= nil, err = err})
end)
""",
        URL=server.url("/hang"),
    )
    proc = await hub(plugins={"http_timeout": source})
    assert await proc.result("timeout") == {
        "resp": False,
        "err": f"http.request: {server.url('/hang')}: timed out after 0.2 s",
    }


async def test_request_methods_patch_head_options(hub: Any, server: LoopbackServer) -> None:
    source = plugin(
        """
for _, m in ipairs({"PATCH", "head", "OPTIONS"}) do
  http.request({method = m, url = URL, body = "b"}, function(resp, err)
    report(m, {status = resp and resp.status, len = resp and #resp.body, err = err})
  end)
end
""",
        URL=server.url("/echo"),
    )
    proc = await hub(plugins={"http_more_methods": source})
    assert (await proc.result("PATCH"))["status"] == 200
    head = await proc.result("head")
    assert head == {"status": 200, "len": 0}
    assert (await proc.result("OPTIONS"))["status"] == 200
    assert sorted(s["method"] for s in server.seen) == ["HEAD", "OPTIONS", "PATCH"]


WRONG_USE = {
    "no_url": (
        "http.request({}, function() end)",
        "http.request: opts.url: expected string, got nil",
    ),
    "url_type": ("http.get(42)", "http.get: url: expected string, got number"),
    "scheme": (
        'http.get("ftp://example.com/x")',
        "http.get: url: expected an http:// or https:// URL, got 'ftp://example.com/x'",
    ),
    "request_scheme": (
        'http.request({url = "file:///etc/passwd"}, function() end)',
        "http.request: opts.url: expected an http:// or https:// URL, got 'file:///etc/passwd'",
    ),
    "no_host": ('http.get("http://")', "http.get: url: expected an http:// or https:// URL"),
    "unknown_key": (
        "http.request({url = URL, tiemout = 1}, function() end)",
        "http.request: opts: unknown key 'tiemout' (known: body, headers, json, method, "
        "timeout, url)",
    ),
    "body_and_json": (
        'http.request({url = URL, body = "a", json = {}}, function() end)',
        "http.request: opts: give body or json, not both",
    ),
    "method": (
        'http.request({url = URL, method = "FETCH"}, function() end)',
        "http.request: opts.method: expected one of GET, POST, PUT, DELETE, PATCH, HEAD, "
        "OPTIONS, got 'FETCH'",
    ),
    "timeout": (
        "http.request({url = URL, timeout = 0}, function() end)",
        "http.request: opts.timeout: expected a positive number of seconds, got 0",
    ),
    "no_callback": (
        "http.request({url = URL})",
        "http.request: callback: expected function, got nil",
    ),
    "header_value": (
        'http.get(URL, {["X-N"] = 5})',
        "http.get: headers.X-N: expected string, got number",
    ),
    "header_crlf": (
        'http.get(URL, {["X-N"] = "a\\r\\nEvil: 1"})',
        "http.get: headers.X-N: header values cannot contain CR, LF or NUL",
    ),
    "post_no_body": ("http.post(URL)", "http.post: body: expected string|table, got nil"),
    "json_function": (
        "http.post(URL, {f = function() end})",
        "http.post: body: cannot be sent as JSON",
    ),
    "wrong_door": ("http.fetch(URL)", "http.fetch does not exist; use http.request"),
}


async def test_wrong_use_raises_with_the_function_name(hub: Any, server: LoopbackServer) -> None:
    source = plugin(
        "timer.after(0, function()\n" + report_raised(WRONG_USE) + 'report("done", true)\nend)\n',
        URL=server.url("/echo"),
    )
    proc = await hub(plugins={"http_wrong_use": source})
    await proc.result("done")
    await assert_raised(proc, WRONG_USE)
    assert server.seen == []  # nothing wrong was sent


async def test_slow_get_in_a_callback_does_not_stall_other_plugins(
    hub: Any, server: LoopbackServer
) -> None:
    """The spec's critical gotcha, inverted: a "sync" http.get in a timer callback suspends
    only its own task. While it waits 1 s on the server, another plugin's 10 ms timer keeps
    ticking; if the get blocked the loop, the ticker would see (almost) no ticks meanwhile."""
    slow = plugin(
        """
-- After every plugin has loaded, so the ticker is listening.
events.on("hub_ready", function()
  events.emit("slow_get_started")
  local resp, err = http.get(URL)
  events.emit("slow_get_done", {status = resp and resp.status, body = resp and resp.body,
    err = err})
end)
""",
        URL=server.url("/slow?ms=1000"),
    )
    ticker = plugin(
        """
local ticks, at_start = 0, nil
timer.every(0.01, function() ticks = ticks + 1 end)
events.on("slow_get_started", function() at_start = ticks end)
events.on("slow_get_done", function(resp)
  report("ticker", {at_start = at_start, at_done = ticks, resp = resp})
end)
"""
    )
    proc = await hub(plugins={"http_slow_get": slow, "http_ticker": ticker})
    got = await proc.result("ticker")
    assert got["resp"] == {"status": 200, "body": "slow done"}
    assert got["at_start"] is not None
    ticked = got["at_done"] - got["at_start"]
    assert ticked >= 50, f"the 10 ms timer ticked only {ticked} times during a 1 s http.get"


async def test_unloading_a_plugin_cancels_its_requests(
    hub: Any, server: LoopbackServer, git_repo: Any
) -> None:
    """A request in flight when its plugin reloads never calls back into the old version."""
    first = plugin(
        """
http.request({url = URL}, function() report("stale_callback", true) end)
report("first_loaded", true)
""",
        URL=server.url("/hold"),
    )
    proc = await hub(plugins={"http_unload": first})
    await proc.result("first_loaded")
    await server.arrived.wait()
    mark = proc.mark()
    second = plugin(
        """
timer.after(0, function()
  local resp = http.get(URL)
  report("second", resp.status)
end)
""",
        URL=server.url("/slow?ms=200"),
    )
    write_plugin(git_repo, "http_unload", second)
    await proc.wait_for("plugin 'http_unload' reloaded", since=mark)
    # Answer the old request now. Had it survived the reload, its callback would run long
    # before the new version's 200 ms request comes back.
    server.release.set()
    assert await proc.result("second", since=mark) == 200
    assert "RESULT stale_callback" not in proc.log


async def test_load_time_get_and_shutdown_with_a_request_in_flight(
    hub: Any, server: LoopbackServer
) -> None:
    """The spec's recommended place for http.get (plugin load) works, and stopping the hub
    with a request in flight exits cleanly without calling back."""
    source = plugin(
        """
local resp = http.get(ECHO)
report("load_get", resp.status)
http.request({url = HANG}, function() report("stale_callback", true) end)
""",
        ECHO=server.url("/echo"),
        HANG=server.url("/hang"),
    )
    proc = await hub(plugins={"http_shutdown": source})
    assert await proc.result("load_get") == 200
    await server.wait_seen("/hang")
    await proc.stop_and_verify()
    assert "RESULT stale_callback" not in proc.log
