"""The Lua port of Lua's pattern matcher (botster/lua/patterns.lua) agrees with the C one.

The port runs where the C matcher could backtrack for hours (it can be cut by the CPU budget);
it must give the same answers. Checked in-process against the C functions of the same state.
"""

from __future__ import annotations

from importlib import resources

from hypothesis import given, settings
from hypothesis import strategies as st
from lupa import lua54

_COMPARE = b"""
return function(m, s, p, repl)
  local function pk(ok, ...) return { ok = ok, n = select('#', ...), ... } end
  local function same(what, a, b)
    if a.ok ~= b.ok then
      return what .. ": C " .. tostring(a.ok) .. " " .. tostring(a[1]) .. ", Lua "
        .. tostring(b.ok) .. " " .. tostring(b[1])
    end
    if not a.ok then return nil end
    if a.n ~= b.n then return what .. ": " .. a.n .. " results vs " .. b.n end
    for i = 1, a.n do
      if a[i] ~= b[i] then return what .. ": result " .. i .. ": " .. tostring(a[i]) .. " vs " .. tostring(b[i]) end
    end
  end
  local function gm(iter)
    local out = {}
    for _ = 1, 1000 do
      local x, y = iter()
      if x == nil then break end
      out[#out + 1] = tostring(x) .. "|" .. tostring(y)
    end
    return table.concat(out, ",")
  end
  return same("find", pk(pcall(m.c_find, s, p)), pk(pcall(m.lua_find, s, p, 1, false, true)))
    or same("find init 2", pk(pcall(m.c_find, s, p, 2)), pk(pcall(m.lua_find, s, p, 2, false, true)))
    or same("match", pk(pcall(m.c_match, s, p)), pk(pcall(m.lua_find, s, p, 1, false, false)))
    or same("gsub", pk(pcall(m.c_gsub, s, p, repl)), pk(pcall(m.lua_gsub, s, p, repl)))
    or same("gsub fn", pk(pcall(m.c_gsub, s, p, string.upper)), pk(pcall(m.lua_gsub, s, p, string.upper)))
    or same("gmatch", pk(pcall(function() return gm(m.c_gmatch(s, p)) end)),
      pk(pcall(function() return gm(m.lua_gmatch(s, p)) end)))
end
"""


def _runtime():
    lua = lua54.LuaRuntime(encoding=None)
    source = resources.files("botster.lua").joinpath("patterns.lua").read_bytes()
    module = lua.execute(source)
    return module, lua.execute(_COMPARE)


_MODULE, _CHECK = _runtime()

subjects = st.text(alphabet="ab c()[]%-.1\n", max_size=12).map(str.encode)
atoms = st.sampled_from(
    "a b . %a %s %S [ab] [^a] [a-c] %( %% _ ( ) () %1 %bab %f[a] %f[%s] $ ^ [%a] []".split()
)
quantifiers = st.sampled_from(["", "", "*", "+", "-", "?"])
patterns = st.lists(st.tuples(atoms, quantifiers), max_size=6).map(
    lambda items: "".join(a + q for a, q in items).encode()
)
replacements = st.sampled_from([b"<%0>", b"%1", b"x", b"%%", b"%2", b"%x"])


@settings(max_examples=1500, deadline=None)
@given(subjects, patterns, replacements)
def test_lua_matcher_agrees_with_c(s, p, repl):
    problem = _CHECK(_MODULE, s, p, repl)
    assert problem is None, f"subject {s!r} pattern {p!r} repl {repl!r}: {problem!r}"


def test_known_cases_agree():
    cases = [
        (b"hello world", b"(%w+) (%w+)"),
        (b"key = value", b"^(%S+)%s*=%s*(.-)$"),
        (b"THE (quick) fox", b"%((%a+)%)"),
        (b"f(a(b)c)d", b"%b()"),
        (b"THE (quick) fox", b"%f[%a]%a+"),
        (b"aaa", b"a-b"),
        (b"abcabc", b"(a)(b)c%1%2"),
        (b"", b""),
        (b"abc", b"()b()"),
    ]
    for s, p in cases:
        assert _CHECK(_MODULE, s, p, b"[%0]") is None, (s, p)


def test_pathological_pattern_is_costly_and_ordinary_ones_are_not():
    costly = _MODULE[b"too_costly"]
    assert costly(b"a" * 30 + b"b", b"a*" * 30 + b"c", True)
    assert costly(b"a" * 100_000, b"a*b", False)
    assert not costly(b"x\n" * 1_000_000, b"[^\n]+", False)  # 2 MB of lines: linear
    assert not costly(b"x" * 3_000_000, b"%d%d", True)
    assert costly(b"x" * 3_000_000, b"." * 1000, True)  # linear, but x 1000
    assert not costly(b"x" * 1000, b"^(%w+)", True)
    assert not costly(b"short line", b"^(%S+)%s+(.*)$", True)


def test_plain_find_in_lua_finds_what_c_finds():
    find = _MODULE[b"lua_find"]
    cfind = _MODULE[b"c_find"]
    s = b"ab" * 50 + b"needle-in-a-haystack-xyz" + b"ab" * 10
    for needle in (b"needle-in-a-haystack-xyz", b"ab", b"zz", b"", b"b" * 20, s[-30:]):
        for init in (1, 5, -10):
            assert find(s, needle, init, True, True) == cfind(s, needle, init, True), needle
