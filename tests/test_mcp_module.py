"""The `mcp` Lua module, end to end: the tool registry plugins fill and agents call.

`tools_list_changed` is counted by a listener in its own plugin. To prove an event did *not*
come, a later change acts as the flush marker: its event must carry the next number.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.conftest import write_plugin

PRELUDE = r"""
local function report(tag, value) log.info("RESULT " .. tag .. " " .. json.encode(value)) end
local function raised(fn)
  local ok, err = pcall(fn)
  if ok then return "no error" end
  return tostring(err)
end
local function pair(a, b) return {result = a, err = b} end
"""

MCP_A = (
    PRELUDE
    + r"""
mcp.tool("a_echo", {
  description = "Echoes its input",
  title = "Echo",
  annotations = {readOnlyHint = true},
  input_schema = {
    type = "object",
    properties = {text = {type = "string", description = "what to echo"}},
    required = {"text"},
  },
}, function(params, context)
  return "echo: " .. params.text .. " for " .. tostring(context.agent_key)
end)
mcp.tool("a_table", {description = "Returns a table", input_schema = {type = "object",
  properties = {}, required = {}}}, function(params, context)
  return {ok = true, n = params.n, list = json.array({}), hub_id = context.hub_id}
end)
mcp.tool("a_fails", {description = "Always fails"}, function() error("handler blew up") end)
mcp.tool("a_nil", {}, function() return nil end)
mcp.tool("a_number", {}, function() return 42 end)
mcp.tool("a_not_json", {}, function() return {f = print} end)
mcp.tool("a_waits", {}, function()
  for _ = 1, 3 do coroutine.yield() end
  return "waited"
end)
"""
)

MCP_B = (
    PRELUDE
    + r"""
mcp.tool("b_tool", {description = "From b"}, function() return "b" end)
mcp.tool("b_temp", {description = "Removed again"}, function() return "temp" end)

events.on("hub_ready", function()
  local list = mcp.list_tools()
  local summary = {}
  for i, t in ipairs(list) do summary[i] = {name = t.name, source = t.source} end
  report("list", summary)
  report("count", mcp.count())
  for _, t in ipairs(list) do
    if t.name == "a_echo" then report("a_echo_meta", t) end
    if t.name == "a_table" then report("required_empty", json.encode(t.input_schema)) end
    if t.name == "a_nil" then report("default_schema", json.encode(t.input_schema)) end
  end

  report("echo", pair(mcp.call_tool("a_echo", {text = "hi"}, {agent_key = "agent-1"})))
  local ctx = {agent_key = "k"}
  report("table", pair(mcp.call_tool("a_table", {n = 7}, ctx)))
  report("ctx_untouched", ctx.hub_id == nil)
  report("fails", pair(mcp.call_tool("a_fails", {})))
  report("nil_result", pair(mcp.call_tool("a_nil")))
  report("number_result", pair(mcp.call_tool("a_number")))
  report("not_json", pair(mcp.call_tool("a_not_json")))
  report("waits", pair(mcp.call_tool("a_waits")))
  report("unknown", pair(mcp.call_tool("nope", {})))

  report("remove", {mcp.remove_tool("b_temp"), mcp.remove_tool("b_temp"), mcp.count()})
  report("errors", {
    spec_key = raised(function() mcp.tool("x", {descripton = "typo"}, print) end),
    name_type = raised(function() mcp.tool(nil, {}, print) end),
    name_chars = raised(function() mcp.tool("has space", {}, print) end),
    spec_type = raised(function() mcp.tool("x", "spec", print) end),
    handler = raised(function() mcp.tool("x", {}, "handler") end),
    description = raised(function() mcp.tool("x", {description = 1}, print) end),
    schema = raised(function() mcp.tool("x", {input_schema = "object"}, print) end),
    title = raised(function() mcp.tool("x", {title = {}}, print) end),
    call_name = raised(function() mcp.call_tool(5) end),
    call_params = raised(function() mcp.call_tool("a_echo", "params") end),
    remove_name = raised(function() mcp.remove_tool() end),
    reset_source = raised(function() mcp.reset() end),
  })
  report("after_errors", mcp.count())
end)
"""
)


async def test_registry_calls_results_and_errors(hub):
    proc = await hub(plugins={"mcp_a": MCP_A, "mcp_b": MCP_B})
    proc.expect_log(r"ERROR plugin \[mcp_b\] mcp tool 'a_fails' \(mcp_a\) failed: .*blew up")

    assert await proc.result("list") == [
        {"name": "a_echo", "source": "mcp_a"},
        {"name": "a_fails", "source": "mcp_a"},
        {"name": "a_nil", "source": "mcp_a"},
        {"name": "a_not_json", "source": "mcp_a"},
        {"name": "a_number", "source": "mcp_a"},
        {"name": "a_table", "source": "mcp_a"},
        {"name": "a_waits", "source": "mcp_a"},
        {"name": "b_temp", "source": "mcp_b"},
        {"name": "b_tool", "source": "mcp_b"},
    ]
    assert await proc.result("count") == 9
    assert await proc.result("a_echo_meta") == {
        "name": "a_echo",
        "description": "Echoes its input",
        "title": "Echo",
        "annotations": {"readOnlyHint": True},
        "source": "mcp_a",
        "input_schema": {
            "type": "object",
            "properties": {"text": {"type": "string", "description": "what to echo"}},
            "required": ["text"],
        },
    }
    assert await proc.result("required_empty") == '{"properties":{},"required":[],"type":"object"}'
    assert await proc.result("default_schema") == '{"type":"object"}'

    assert await proc.result("echo") == {"result": "echo: hi for agent-1"}
    table = await proc.result("table")
    assert table.keys() == {"result"}
    hub_id = hashlib.sha256(str(proc.repo.resolve()).encode()).hexdigest()
    assert table["result"] == f'{{"hub_id":"{hub_id}","list":[],"n":7,"ok":true}}'
    assert await proc.result("ctx_untouched") is True

    fails = await proc.result("fails")
    assert fails.keys() == {"err"}
    assert fails["err"].startswith("tool 'a_fails' failed: ")
    line = next(i for i, text in enumerate(MCP_A.splitlines(), 1) if "blew up" in text)
    assert fails["err"].endswith(f"mcp_a/init.lua:{line}: handler blew up")
    assert "\n" not in fails["err"]  # the traceback goes to the log, not to the agent
    await proc.wait_for(r"ERROR plugin \[mcp_b\] mcp tool 'a_fails' \(mcp_a\) failed: ")

    assert await proc.result("nil_result") == {"result": ""}
    assert await proc.result("number_result") == {"result": "42"}
    not_json = await proc.result("not_json")
    assert not_json == {
        "err": "tool 'a_not_json' returned a table that is not JSON: "
        "json.encode: $.f: cannot encode a function"
    }
    assert await proc.result("waits") == {"result": "waited"}
    assert await proc.result("unknown") == {"err": "unknown tool 'nope'"}
    assert await proc.result("remove") == [True, False, 8]

    errors = await proc.result("errors")
    expected = {
        "spec_key": "mcp.tool: spec: unknown key 'descripton' "
        "(known: annotations, description, input_schema, title)",
        "name_type": "mcp.tool: name: expected string, got nil",
        "name_chars": "mcp.tool: name: expected 1-128 letters, digits, '_', '-' or '.', "
        "got 'has space'",
        "spec_type": "mcp.tool: spec: expected table, got string",
        "handler": "mcp.tool: handler: expected function, got string",
        "description": "mcp.tool: spec.description: expected string, got number",
        "schema": "mcp.tool: spec.input_schema: expected table, got string",
        "title": "mcp.tool: spec.title: expected string, got table",
        "call_name": "mcp.call_tool: name: expected string, got number",
        "call_params": "mcp.call_tool: params: expected table, got string",
        "remove_name": "mcp.remove_tool: name: expected string, got nil",
        "reset_source": "mcp.reset: source: expected string, got nil",
    }
    for key, message in expected.items():
        assert errors[key].endswith(message), (key, errors[key])
        assert "mcp_b/init.lua:" in errors[key], (key, errors[key])  # the plugin's own line
    assert await proc.result("after_errors") == 8  # nothing half-registered


OWNER_V1 = """
mcp.tool("own_keep", {description = "kept"}, function() return "keep" end)
mcp.tool("own_gone", {description = "dropped in v2"}, function() return "gone" end)
"""
# Same tools, different code: agents see no change, so no event.
OWNER_V1_EDITED = OWNER_V1 + "-- edited, same tools\n"
OWNER_V2 = """
mcp.tool("own_keep", {description = "kept"}, function() return "keep v2" end)
"""

COUNTER = (
    PRELUDE
    + r"""
local n = 0
events.on("tools_list_changed", function(data)
  n = n + 1
  local names = {}
  for i, t in ipairs(mcp.list_tools()) do names[i] = t.name .. "@" .. t.source end
  report("changed_" .. n, {count = data.count, tools = names})
end)
"""
)


async def test_reload_drops_tools_and_announces_each_change_once(hub, git_repo: Path):
    proc = await hub(plugins={"mcp_owner": OWNER_V1, "mcp_counter": COUNTER})
    # Start-up: one announcement for everything the plugins registered.
    assert await proc.result("changed_1") == {
        "count": 2,
        "tools": ["own_gone@mcp_owner", "own_keep@mcp_owner"],
    }

    # A reload that leaves the list as agents see it unchanged announces nothing...
    mark = proc.mark()
    write_plugin(git_repo, "mcp_owner", OWNER_V1_EDITED)
    await proc.wait_for(r"plugin 'mcp_owner' reloaded", since=mark)

    # ...a reload without `own_gone` removes it and announces once...
    mark = proc.mark()
    write_plugin(git_repo, "mcp_owner", OWNER_V2)
    await proc.wait_for(r"plugin 'mcp_owner' reloaded", since=mark)
    assert await proc.result("changed_2", since=mark) == {
        "count": 1,
        "tools": ["own_keep@mcp_owner"],
    }

    # ...and the flush marker (a new plugin adding a tool) is the very next announcement.
    write_plugin(
        git_repo,
        "mcp_flush",
        PRELUDE
        + r"""
        mcp.tool("flush_tool", {description = "marker"}, function() return "f" end)
        report("calls", {
          keep = mcp.call_tool("own_keep"),
          gone = pair(mcp.call_tool("own_gone")),
        })
        -- reset() accepts a plugin name or the loader's "@<path to init.lua>".
        local init = nil
        for _, p in ipairs(hub.loader.list_plugins()) do
          if p.name == "mcp_owner" then init = p.init end
        end
        report("reset", {by_path = mcp.reset("@" .. init), again = mcp.reset("mcp_owner"),
                         unknown = mcp.reset("nobody"), left = mcp.count()})
        """,
    )
    assert await proc.result("calls", since=mark) == {
        "keep": "keep v2",
        "gone": {"err": "unknown tool 'own_gone'"},
    }
    assert await proc.result("reset", since=mark) == {
        "by_path": 1,
        "again": 0,
        "unknown": 0,
        "left": 1,
    }
    # The flush plugin's load (flush_tool added, own_keep reset) settles into one announcement:
    # number 3, so neither reload above produced a second one.
    assert await proc.result("changed_3", since=mark) == {
        "count": 1,
        "tools": ["flush_tool@mcp_flush"],
    }
