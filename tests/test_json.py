"""The `json` primitive, end to end: round trips, null and empty-table rules, numbers, errors.

Every check runs in a real hub, inside a real plugin; results come back through the log. Text
whose exact bytes matter crosses as hex, so the assertion sees what Lua produced, byte for byte.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.lua_prelude import lua_str

# Shared by every plugin below: report(tag, value) and hex(string).
PRELUDE = r"""
local function report(tag, value) log.info("RESULT " .. tag .. " " .. json.encode(value)) end
local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
-- Runs fn and returns what it raised (or "no error").
local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return "no error" end
  return tostring(err)
end
"""


def unhex(text: str) -> str:
    return bytes.fromhex(text).decode("utf-8")


async def test_round_trips_keep_structure_text_and_number_types(hub):
    doc = {
        "name": "botster ✓ \u00e9\u4e2d\U0001f600",
        "escapes": 'quote " backslash \\ slash / \n\r\t\b\f \x00 \x1f \x7f',
        "nested": {"list": [1, [2, [3, {"deep": True}]]], "empty_obj": {}, "empty_arr": []},
        "mixed": [None, False, 0, -1, 0.5, "s", {"k": []}],
        "int_edges": [2**53 + 1, 2**63 - 1, -(2**63), 0, -0],
        "float_edges": [1.5, 1.0, -2.0, 1e-7, 1e300, 2.0**63, 0.1, 5e-324],
    }
    proc = await hub(
        plugins={
            "jrt": PRELUDE
            + f"""
            local text = {lua_str(json.dumps(doc))}
            local v = assert(json.decode(text))
            report("roundtrip", hex(json.encode(v)))
            report("types", {{
              big = math.type(v.int_edges[1]), max = math.type(v.int_edges[2]),
              min = math.type(v.int_edges[3]), f15 = math.type(v.float_edges[1]),
              f10 = math.type(v.float_edges[2]), maxval = v.int_edges[2] == math.maxinteger,
              minval = v.int_edges[3] == math.mininteger,
            }})
            report("ints", {{
              json.encode(9007199254740993), json.encode(math.maxinteger),
              json.encode(math.mininteger), json.encode(-0), json.encode(json.decode("7")),
            }})
            report("floats", {{
              json.encode(1.5), json.encode(1.0), json.encode(-0.0), json.encode(1e300),
              json.encode(2^63), json.encode(json.decode("2.50")), json.encode(json.decode("1e2")),
            }})
            report("float_types", {{
              math.type(json.decode("1.0")), math.type(json.decode("1e2")),
              math.type(json.decode("10")), math.type(json.decode("-9223372036854775808")),
              math.type(json.decode("9223372036854775808")),
            }})
            report("escapes", hex(json.encode("a\\"b\\\\c\\n\\r\\t\\b\\f\\0\\31\\127/")))
            report("unicode_in", hex(json.decode('"\\\\u00e9\\\\ud83d\\\\ude00 \\\\u4e2d"')))
            report("unicode_out", hex(json.encode("é😀中")))
            report("scalars", {{
              json.encode(true), json.encode(false), json.encode("s"), json.encode(nil),
              json.encode(12), json.encode(json.null),
            }})
            """
        }
    )
    out = json.loads(unhex(await proc.result("roundtrip")))
    assert out == doc
    assert type(out["int_edges"][0]) is int and type(out["float_edges"][1]) is float
    assert [type(x) for x in out["float_edges"]] == [float] * len(doc["float_edges"])
    assert await proc.result("types") == {
        "big": "integer",
        "max": "integer",
        "min": "integer",
        "f15": "float",
        "f10": "float",
        "maxval": True,
        "minval": True,
    }
    assert await proc.result("ints") == [
        "9007199254740993",
        "9223372036854775807",
        "-9223372036854775808",
        "0",
        "7",
    ]
    floats = await proc.result("floats")
    assert floats[:3] == ["1.5", "1.0", "-0.0"]
    assert json.loads(floats[3]) == 1e300
    assert json.loads(floats[4]) == 2.0**63 and isinstance(json.loads(floats[4]), float)
    assert floats[5:] == ["2.5", "100.0"]
    assert await proc.result("float_types") == ["float", "float", "integer", "integer", "float"]
    assert unhex(await proc.result("escapes")) == r'"a\"b\\c\n\r\t\b\f\u0000\u001f\u007f/"'
    assert unhex(await proc.result("unicode_in")) == "é😀 中"
    # Non-ASCII text is written as UTF-8, not escaped.
    assert unhex(await proc.result("unicode_out")) == '"é😀中"'
    assert await proc.result("scalars") == ["true", "false", '"s"', "null", "12", "null"]


async def test_null_and_empty_table_rules(hub):
    proc = await hub(
        plugins={
            "jnull": PRELUDE
            + r"""
            report("empty_table", json.encode({}))
            report("array_empty", json.encode(json.array({})))
            report("array_default", json.encode(json.array()))
            local t = {}
            report("array_returns_t", json.array(t) == t)
            report("array_filled", json.encode(json.array({1, 2})))
            report("decoded_empty",
              {json.encode(json.decode("[]")), json.encode(json.decode("{}"))})
            report("decoded_nested",
              json.encode(json.decode('{"a":[],"b":{},"c":[[],{}],"d":[[[]]]}')))
            local shrunk = json.decode('{"items":[1,2]}')
            table.remove(shrunk.items); table.remove(shrunk.items)
            report("emptied_array", json.encode(shrunk))
            local obj = json.decode('{"a":null,"b":1,"c":{"d":null}}')
            report("null_in_object", {a_is_nil = obj.a == nil, enc = json.encode(obj)})
            local arr = json.decode('[1,null,3,null]')
            report("null_in_array", {
              len = #arr, second = arr[2] == json.null, fourth = arr[4] == json.null,
              third = arr[3], enc = json.encode(arr),
            })
            local top = json.decode("null")
            report("top_null", {is_null = top == json.null, is_nil = top == nil,
                                enc = json.encode(top)})
            report("null_placeholder", json.encode({1, json.null, 3}))
            report("null_value", json.encode({a = json.null}))
            """
        }
    )
    assert await proc.result("empty_table") == "{}"
    assert await proc.result("array_empty") == "[]"
    assert await proc.result("array_default") == "[]"
    assert await proc.result("array_returns_t") is True
    assert await proc.result("array_filled") == "[1,2]"
    assert await proc.result("decoded_empty") == ["[]", "{}"]
    assert await proc.result("decoded_nested") == '{"a":[],"b":{},"c":[[],{}],"d":[[[]]]}'
    # A decoded array that the plugin empties is still an array.
    assert await proc.result("emptied_array") == '{"items":[]}'
    assert await proc.result("null_in_object") == {"a_is_nil": True, "enc": '{"b":1,"c":{}}'}
    assert await proc.result("null_in_array") == {
        "len": 4,
        "second": True,
        "fourth": True,
        "third": 3,
        "enc": "[1,null,3,null]",
    }
    assert await proc.result("top_null") == {"is_null": True, "is_nil": False, "enc": "null"}
    assert await proc.result("null_placeholder") == "[1,null,3]"
    # json.null as an object value is written as null (only decoding drops null members).
    assert await proc.result("null_value") == '{"a":null}'


async def test_decode_failures_return_nil_and_a_message(hub):
    proc = await hub(
        plugins={
            "jbad": PRELUDE
            + r"""
            local function try(text)
              local v, err = json.decode(text)
              return {is_nil = v == nil, err = err}
            end
            report("multiline", try('{\n  "a": 1,\n  "b": ]\n}'))
            report("trailing", try('{"a":1} x'))
            report("empty", try(""))
            report("nan", try("NaN"))
            report("infinity", try("[Infinity]"))
            report("single_quotes", try("{'a': 1}"))
            report("bad_utf8", try('"\255"'))
            report("lone_surrogate", try('{"k": ["ok", "\\ud800"]}'))
            report("escaped_backslash_is_fine", try('"\\\\ud800"'))
            report("too_deep", try(string.rep("[", 300) .. string.rep("]", 300)))
            report("out_of_range", try("[1e400]"))
            report("huge_int", try(string.rep("9", 5000)))
            report("int_beyond_64", json.decode("18446744073709551616"))
            local deep = string.rep("[", 150) .. string.rep("]", 150)
            report("deep_ok", #json.encode(json.decode(deep)))
            """
        }
    )
    m = await proc.result("multiline")
    assert m["is_nil"] is True
    assert m["err"].startswith("json.decode: invalid JSON at line 3 column 8: ")
    t = await proc.result("trailing")
    assert t == {"is_nil": True, "err": "json.decode: invalid JSON at line 1 column 9: Extra data"}
    assert (await proc.result("empty"))["err"].startswith("json.decode: invalid JSON at line 1 col")
    for tag in ("nan", "infinity", "single_quotes"):
        r = await proc.result(tag)
        assert r["is_nil"] is True and r["err"].startswith("json.decode: invalid JSON"), (tag, r)
    bad = await proc.result("bad_utf8")
    assert bad == {
        "is_nil": True,
        "err": "json.decode: invalid UTF-8 at byte 2: invalid start byte",
    }
    lone = await proc.result("lone_surrogate")
    assert lone == {"is_nil": True, "err": "json.decode: $.k[2]: lone UTF-16 surrogate in a string"}
    assert (await proc.result("escaped_backslash_is_fine"))["is_nil"] is False
    assert await proc.result("too_deep") == {
        "is_nil": True,
        "err": "json.decode: document is nested too deeply",
    }
    rng = await proc.result("out_of_range")
    assert rng == {"is_nil": True, "err": "json.decode: invalid JSON: number 1e400 is out of range"}
    huge = await proc.result("huge_int")
    assert huge["is_nil"] is True and "out of range" in huge["err"]
    assert await proc.result("int_beyond_64") == 2.0**64
    assert await proc.result("deep_ok") == 300


async def test_encode_failures_raise_with_the_path(hub):
    proc = await hub(
        plugins={
            "jenc": PRELUDE
            + r"""
            local cyc = {name = "c"}
            cyc.items = {1, {back = cyc}}
            report("errors", {
              fn = raised(json.encode, {a = {b = {1, function() end}}}),
              top_fn = raised(json.encode, print),
              cycle = raised(json.encode, cyc),
              nan = raised(json.encode, {x = {0/0}}),
              inf = raised(json.encode, {x = math.huge}),
              ninf = raised(json.encode, -math.huge),
              utf8 = raised(json.encode, {s = "ok", t = {"\255\254"}}),
              utf8_key = raised(json.encode, {["\255"] = 1}),
              holes = raised(json.encode, {list = {1, nil, 3}}),
              mixed = raised(json.encode, {1, name = "x"}),
              bool_key = raised(json.encode, {[true] = 1}),
              zero_key = raised(json.encode, {[0] = "a"}),
              float_key = raised(json.encode, {[1.5] = "a"}),
              userdata = raised(json.encode, {co = coroutine.create(print)}),
            })
            -- The error is raised at the caller's line (level 2), so it names this file.
            local ok, err = pcall(function() local s = json.encode({f = print}); return s end)
            report("where", err)
            -- A failed encode leaves nothing behind for the next one, and a key that failed
            -- is checked again (keys are quoted once and remembered).
            report("after", {json.encode({b = 1, a = {"x", {c = "d"}}}),
              raised(json.encode, {["\255"] = 1})})
            -- Shared (non-cyclic) subtables are fine.
            local shared = {1}
            report("shared", json.encode({a = shared, b = shared}))
            """
        }
    )
    e = await proc.result("errors")
    assert e["fn"].endswith("json.encode: $.a.b[2]: cannot encode a function")
    assert e["top_fn"].endswith("json.encode: $: cannot encode a function")
    assert e["cycle"].endswith("json.encode: $.items[2].back: table contains itself")
    assert e["nan"].endswith("json.encode: $.x[1]: cannot encode NaN (JSON has no NaN or infinity)")
    assert e["inf"].endswith("json.encode: $.x: cannot encode inf (JSON has no NaN or infinity)")
    assert e["ninf"].endswith("json.encode: $: cannot encode -inf (JSON has no NaN or infinity)")
    assert e["utf8"].endswith("json.encode: $.t[1]: string is not valid UTF-8")
    assert e["utf8_key"].endswith("json.encode: $ (a key): string is not valid UTF-8")
    assert e["holes"].endswith(
        "json.encode: $.list: array has holes (2 items, highest index 3); fill them with json.null"
    )
    assert e["mixed"].endswith(
        "json.encode: $: table mixes number keys (1) with string keys; "
        "JSON objects need string keys"
    )
    assert e["bool_key"].endswith(
        "json.encode: $: table has a boolean key; JSON objects need string keys "
        "and arrays need keys 1..n"
    )
    assert "json.encode: $: table has a number key (0);" in e["zero_key"]
    assert "json.encode: $: table has a number key (1.5);" in e["float_key"]
    assert e["userdata"].endswith("json.encode: $.co: cannot encode a thread")
    where = await proc.result("where")
    assert "jenc/init.lua:" in where and where.endswith(
        "json.encode: $.f: cannot encode a function"
    )
    assert await proc.result("shared") == '{"a":[1],"b":[1]}'
    after = await proc.result("after")
    assert after[0] == '{"a":["x",{"c":"d"}],"b":1}'
    assert after[1].endswith("json.encode: $ (a key): string is not valid UTF-8")


async def test_wrong_argument_types_raise(hub):
    proc = await hub(
        plugins={
            "jargs": PRELUDE
            + r"""
            -- Each call sits in a closure (not a tail call) so the error's position is here.
            report("args", {
              decode_nil = raised(function() local v = json.decode(); return v end),
              decode_table = raised(function() local v = json.decode({}); return v end),
              decode_number = raised(function() local v = json.decode(5); return v end),
              array_number = raised(function() local v = json.array(5); return v end),
              array_string = raised(function() local v = json.array("x"); return v end),
              wrong_door = raised(function() local v = json.parse; return v end),
              unknown = raised(function() local v = json.nope; return v end),
            })
            """
        }
    )
    a = await proc.result("args")
    assert a["decode_nil"].endswith("json.decode: text: expected string, got nil")
    assert a["decode_table"].endswith("json.decode: text: expected string, got table")
    assert "json.decode: text: expected string, got " in a["decode_number"]
    assert a["array_number"].endswith("json.array: t: expected table, got number")
    assert a["array_string"].endswith("json.array: t: expected table, got string")
    assert a["wrong_door"].endswith("json.parse does not exist; use json.decode(str)")
    assert "json.nope does not exist" in a["unknown"]
    for msg in a.values():
        assert "jargs/init.lua:" in msg, msg  # raised at the plugin's line


# Hypothesis: JSON documents made in Python, decoded and re-encoded by Lua. ---------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_documents = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


def _collect_documents(n: int) -> list[Any]:
    """n documents from the strategy (generation only: one hub checks them all at once)."""
    docs: list[Any] = []

    @settings(
        max_examples=n,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_documents)
    def collect(doc: Any) -> None:
        docs.append(doc)

    collect()
    return docs


def _expected(value: Any) -> Any:
    """What the round trip must give back: null members of objects are dropped by design."""
    if isinstance(value, dict):
        return {k: _expected(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_expected(v) for v in value]
    return value


def _typed(value: Any) -> Any:
    """A comparison key that tells 1 from 1.0 from True."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, float):
        assert math.isfinite(value)
        return ("float", value)
    return (type(value).__name__, value)


async def test_hypothesis_documents_round_trip_through_lua(hub):
    docs = _collect_documents(100)
    # Python writes them; the plugin decodes and re-encodes each one and reports the bytes.
    literals = ",\n".join(lua_str(json.dumps(d, ensure_ascii=False)) for d in docs)
    proc = await hub(
        plugins={
            "jprop": PRELUDE
            + f"""
            local docs = {{
            {literals}
            }}
            for i, text in ipairs(docs) do
              local v, err = json.decode(text)
              if err then
                report("doc" .. i, {{err = err}})
              else
                local ok, out = pcall(json.encode, v)
                report("doc" .. i, ok and {{hex = hex(out)}} or {{err = out}})
              end
            end
            report("docs_done", #docs)
            """
        }
    )
    assert await proc.result("docs_done") == len(docs)
    failures = []
    for i, doc in enumerate(docs, 1):
        got = await proc.result(f"doc{i}")
        if "err" in got:
            failures.append((doc, got["err"]))
            continue
        back = json.loads(unhex(got["hex"]))
        if _typed(back) != _typed(_expected(doc)):
            failures.append((doc, back))
    assert not failures, f"{len(failures)} documents did not round-trip, e.g. {failures[:3]}"
