"""MCP tool arguments are checked against the tool's input_schema before the handler runs.

The error names the field; a handler never sees arguments its schema refuses; a tool whose
schema is not valid JSON Schema says so. Called through the hub's socket, as mcp-serve does.
"""

from __future__ import annotations

import pytest

PLUGIN = r"""
local calls = 0
mcp.tool("greet", {
  description = "Greets",
  input_schema = {
    type = "object",
    properties = {
      name = {type = "string", minLength = 1},
      times = {type = "integer", minimum = 1, maximum = 3},
      tags = {type = "array", items = {type = "string"}},
      opts = {type = "object", properties = {loud = {type = "boolean"}},
              additionalProperties = false},
    },
    required = {"name"},
  },
}, function(params)
  calls = calls + 1
  log.info("RESULT calls " .. calls)
  return "hello " .. params.name .. " x" .. (params.times or 1)
end)
mcp.tool("free", {description = "No schema"}, function(params) return "free" end)
mcp.tool("broken", {description = "Bad schema", input_schema = {type = "objekt"}},
  function() return "never" end)
"""


async def call(conn, name: str, arguments: dict) -> tuple[bool, str]:
    """(is_error, text), as an agent's MCP client sees the result."""
    r = await conn.request("mcp.call_tool", {"name": name, "arguments": arguments})
    return r["is_error"], r["content"][0]["text"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "tool 'greet': arguments: 'name' is a required property"),
        ({"name": 5}, "tool 'greet': argument name: 5 is not of type 'string'"),
        ({"name": ""}, "tool 'greet': argument name: '' should be non-empty"),
        (
            {"name": "a", "times": 9},
            "tool 'greet': argument times: 9 is greater than the maximum of 3",
        ),
        (
            {"name": "a", "tags": ["x", 2]},
            "tool 'greet': argument tags[1]: 2 is not of type 'string'",
        ),
        (
            {"name": "a", "opts": {"loud": True, "x": 1}},
            "tool 'greet': argument opts: Additional properties are not allowed ('x' was unexpected)",
        ),
    ],
)
async def test_arguments_the_schema_refuses_never_reach_the_handler(hub, arguments, message):
    proc = await hub(plugins={"p": PLUGIN})
    conn = await proc.connect()
    assert await call(conn, "greet", arguments) == (True, message)
    assert proc.count("RESULT calls") == 0
    ok = await call(conn, "greet", {"name": "ann", "times": 2, "tags": [], "opts": {}})
    assert ok == (False, "hello ann x2")
    assert await proc.result("calls") == 1
    await conn.close()


async def test_no_schema_takes_an_object_and_a_bad_schema_says_so(hub):
    proc = await hub(plugins={"p": PLUGIN})
    conn = await proc.connect()
    assert await call(conn, "free", {"anything": [1, {"x": None}]}) == (False, "free")
    is_error, text = await call(conn, "broken", {})
    assert is_error and text.startswith("tool 'broken': the tool's input_schema is not a valid")
    await conn.close()
