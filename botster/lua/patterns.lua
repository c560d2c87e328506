-- Bounded pattern matching: string.find, match, gmatch and gsub that cannot freeze the hub.
--
-- Lua's matcher is C code that backtracks: `string.find(("a"):rep(30) .. "b", ("a*"):rep(30)
-- .. "c")` runs for hours, and no hook can interrupt C. Each call here first estimates the
-- worst case from the subject's length and the pattern's repetition items; a call whose
-- estimate is small (nearly all of them: plain finds, anchored or short subjects, one
-- trailing repetition) runs the C matcher; the rest run this file's port of lstrlib.c's
-- matcher, written in Lua, which the CPU budget's count hook can cut like any plugin code.
-- Same results, same error messages; only slower (about 30x), and only where C could hang.
--
-- Loaded once by runtime.py; replaces the four functions in the shared `string` table (the
-- string metatable's __index), so `s:find(p)` is covered too.

local byte, sub, find_c, match_c = string.byte, string.sub, string.find, string.match
local gmatch_c, gsub_c = string.gmatch, string.gsub
local tostring, type, error, select = tostring, type, error, select
local concat, unpack = table.concat, table.unpack
local tointeger = math.tointeger

-- Estimated matcher steps above which the Lua matcher runs instead of C (a few ms of C).
local LIMIT = 2e6
local MAXCCALLS = 200
local MAXCAPTURES = 32
local CAP_UNFINISHED, CAP_POSITION = -1, -2
local ESC, LBRACK, RBRACK, CARET = 37, 91, 93, 94 -- % [ ] ^
-- A find whose pattern has none of these is a plain find (as in lstrlib.c).
local SPECIALS = "[%^%$%*%+%?%.%(%[%%%-]"

-- Character classes of the C locale, as 256-entry lookup tables.
local classes = {}
do
  local function range(t, a, b) for c = a, b do t[c] = true end end
  local a, d, l, u, s, c, p, x = {}, {}, {}, {}, {}, {}, {}, {}
  range(l, 97, 122); range(u, 65, 90); range(a, 97, 122); range(a, 65, 90); range(d, 48, 57)
  range(s, 9, 13); s[32] = true; range(c, 0, 31); c[127] = true
  range(p, 33, 47); range(p, 58, 64); range(p, 91, 96); range(p, 123, 126)
  range(x, 48, 57); range(x, 65, 70); range(x, 97, 102)
  local g, w = {}, {}
  range(g, 33, 126); range(w, 48, 57); range(w, 65, 90); range(w, 97, 122)
  classes = { [97] = a, [100] = d, [108] = l, [117] = u, [115] = s, [99] = c, [112] = p,
    [120] = x, [103] = g, [119] = w }
end

local function match_class(c, cl)
  local t = classes[cl]
  if t == nil then
    local lower = cl + 32
    t = (cl >= 65 and cl <= 90) and classes[lower]
    if not t then return cl == c end
    return not t[c]
  end
  return t[c] == true
end

local function perror(msg) error({ pattern_error = msg }) end

-- ms: {src, src_len, pat, p_len, level, init{}, len{}, depth}; positions are 1-based, a
-- subject position one past the end is the end.
local function class_end(ms, p)
  local pat = ms.pat
  local c = byte(pat, p)
  p = p + 1
  if c == ESC then
    if p > ms.p_len then perror("malformed pattern (ends with '%')") end
    return p + 1
  elseif c == LBRACK then
    if byte(pat, p) == CARET then p = p + 1 end
    repeat
      if p > ms.p_len then perror("malformed pattern (missing ']')") end
      local cc = byte(pat, p)
      p = p + 1
      if cc == ESC and p <= ms.p_len then p = p + 1 end
    until byte(pat, p) == RBRACK
    return p + 1
  end
  return p
end

local function match_bracket_class(ms, c, p, ec)
  local pat = ms.pat
  local sig = true
  if byte(pat, p + 1) == CARET then
    sig = false
    p = p + 1
  end
  p = p + 1
  while p < ec do
    local pc = byte(pat, p)
    if pc == ESC then
      p = p + 1
      if match_class(c, byte(pat, p)) then return sig end
    elseif byte(pat, p + 1) == 45 and p + 2 < ec then -- '-'
      p = p + 2
      if pc <= c and c <= byte(pat, p) then return sig end
    elseif pc == c then
      return sig
    end
    p = p + 1
  end
  return not sig
end

local function single_match(ms, s, p, ep)
  if s > ms.src_len then return false end
  local c = byte(ms.src, s)
  local pc = byte(ms.pat, p)
  if pc == 46 then return true -- '.'
  elseif pc == ESC then return match_class(c, byte(ms.pat, p + 1))
  elseif pc == LBRACK then return match_bracket_class(ms, c, p, ep - 1)
  end
  return pc == c
end

local do_match

local function max_expand(ms, s, p, ep)
  local i = 0
  while single_match(ms, s + i, p, ep) do i = i + 1 end
  while i >= 0 do
    local res = do_match(ms, s + i, ep + 1)
    if res then return res end
    i = i - 1
  end
  return nil
end

local function min_expand(ms, s, p, ep)
  while true do
    local res = do_match(ms, s, ep + 1)
    if res then return res end
    if single_match(ms, s, p, ep) then s = s + 1 else return nil end
  end
end

local function start_capture(ms, s, p, what)
  local level = ms.level + 1
  if level > MAXCAPTURES then perror("too many captures") end
  ms.init[level], ms.len[level] = s, what
  ms.level = level
  local res = do_match(ms, s, p)
  if res == nil then ms.level = ms.level - 1 end
  return res
end

local function end_capture(ms, s, p)
  local l
  for i = ms.level, 1, -1 do
    if ms.len[i] == CAP_UNFINISHED then l = i break end
  end
  if not l then perror("invalid pattern capture") end
  ms.len[l] = s - ms.init[l]
  local res = do_match(ms, s, p)
  if res == nil then ms.len[l] = CAP_UNFINISHED end
  return res
end

local function check_capture(ms, l)
  l = l - 48 -- '0'
  if l < 1 or l > ms.level or ms.len[l] == CAP_UNFINISHED then
    perror("invalid capture index %" .. (l))
  end
  return l
end

local function match_capture(ms, s, l)
  l = check_capture(ms, l)
  local len = ms.len[l]
  if len < 0 then return nil end -- a position capture (C compares it as a huge size_t)
  if ms.src_len - s + 1 >= len and sub(ms.src, ms.init[l], ms.init[l] + len - 1)
      == sub(ms.src, s, s + len - 1) then
    return s + len
  end
  return nil
end

local function match_balance(ms, s, p)
  if p >= ms.p_len then perror("malformed pattern (missing arguments to '%b')") end
  local src = ms.src
  if s > ms.src_len or byte(src, s) ~= byte(ms.pat, p) then return nil end
  local b, e = byte(ms.pat, p), byte(ms.pat, p + 1)
  local cont = 1
  s = s + 1
  while s <= ms.src_len do
    local c = byte(src, s)
    if c == e then
      cont = cont - 1
      if cont == 0 then return s + 1 end
    elseif c == b then
      cont = cont + 1
    end
    s = s + 1
  end
  return nil
end

do_match = function(ms, s, p)
  ms.depth = ms.depth - 1
  if ms.depth == 0 then perror("pattern too complex") end
  local pat = ms.pat
  while true do
    if p > ms.p_len then break end
    local pc = byte(pat, p)
    local dflt = false
    if pc == 40 then -- '('
      if byte(pat, p + 1) == 41 then s = start_capture(ms, s, p + 2, CAP_POSITION)
      else s = start_capture(ms, s, p + 1, CAP_UNFINISHED) end
      break
    elseif pc == 41 then -- ')'
      s = end_capture(ms, s, p + 1)
      break
    elseif pc == 36 and p == ms.p_len then -- '$' at the end
      if s ~= ms.src_len + 1 then s = nil end
      break
    elseif pc == ESC then
      local nc = byte(pat, p + 1)
      if nc == 98 then -- 'b'
        s = match_balance(ms, s, p + 2)
        if s == nil then break end
        p = p + 4
      elseif nc == 102 then -- 'f'
        p = p + 2
        if byte(pat, p) ~= LBRACK then perror("missing '[' after '%f' in pattern") end
        local ep = class_end(ms, p)
        local prev = s == 1 and 0 or byte(ms.src, s - 1)
        local cur = byte(ms.src, s) or 0
        if not match_bracket_class(ms, prev, p, ep - 1) and match_bracket_class(ms, cur, p, ep - 1) then
          p = ep
        else
          s = nil
          break
        end
      elseif nc and nc >= 48 and nc <= 57 then
        s = match_capture(ms, s, nc)
        if s == nil then break end
        p = p + 2
      else
        dflt = true
      end
    else
      dflt = true
    end
    if dflt then
      local ep = class_end(ms, p)
      local epc = byte(pat, ep)
      if not single_match(ms, s, p, ep) then
        if epc == 42 or epc == 63 or epc == 45 then -- * ? -
          p = ep + 1
        else
          s = nil
          break
        end
      elseif epc == 63 then -- ?
        local res = do_match(ms, s + 1, ep + 1)
        if res then
          s = res
          break
        end
        p = ep + 1
      elseif epc == 43 then -- +
        s = max_expand(ms, s + 1, p, ep)
        break
      elseif epc == 42 then -- *
        s = max_expand(ms, s, p, ep)
        break
      elseif epc == 45 then -- -
        s = min_expand(ms, s, p, ep)
        break
      else
        s = s + 1
        p = ep
      end
    end
  end
  ms.depth = ms.depth + 1
  return s
end

local function get_capture(ms, i, s, e)
  if i > ms.level then
    if i ~= 1 then perror("invalid capture index %" .. i) end
    return sub(ms.src, s, e - 1)
  end
  local l = ms.len[i]
  if l == CAP_UNFINISHED then perror("unfinished capture") end
  if l == CAP_POSITION then return ms.init[i] end
  return sub(ms.src, ms.init[i], ms.init[i] + l - 1)
end

local function captures(ms, s, e, whole)
  local n = (ms.level == 0 and whole) and 1 or ms.level
  local out = {}
  for i = 1, n do out[i] = get_capture(ms, i, s, e) end
  return out, n
end

local function new_state(src, pat, pstart)
  -- The pattern is re-based so that pstart is position 1 (an anchor '^' is skipped).
  if pstart > 1 then pat = sub(pat, pstart) end
  return { src = src, src_len = #src, pat = pat, p_len = #pat, level = 0, init = {}, len = {},
    depth = MAXCCALLS }
end

local function reset(ms)
  ms.level = 0
  ms.depth = MAXCCALLS
end

local function posrelat(pos, len)
  if pos > 0 then return pos end
  if pos == 0 then return 1 end
  if pos < -len then return 1 end
  return len + pos + 1
end

-- C finds each candidate by a short prefix (a cost linear in the subject); the loop over
-- candidates is Lua, so the budget can cut a subject full of near-misses.
local function plain_find(s, p, init)
  local ls, lp = #s, #p
  if lp == 0 then return init end
  local prefix = sub(p, 1, 16)
  local i = init
  while i <= ls - lp + 1 do
    i = find_c(s, prefix, i, true)
    if i == nil or i > ls - lp + 1 then return nil end
    if lp <= 16 or sub(s, i, i + lp - 1) == p then return i end
    i = i + 1
  end
  return nil
end

local function lua_find(s, p, init, plain, want_find)
  local ls = #s
  init = posrelat(init or 1, ls)
  if init > ls + 1 then return nil end
  if want_find and (plain or not find_c(p, SPECIALS)) then
    local i = plain_find(s, p, init)
    if i then return i, i + #p - 1 end
    return nil
  end
  local anchor = byte(p, 1) == CARET
  local ms = new_state(s, p, anchor and 2 or 1)
  local s1 = init
  repeat
    reset(ms)
    local e = do_match(ms, s1, 1)
    if e then
      if want_find then
        local caps, n = captures(ms, nil, 0, false)
        return s1, e - 1, unpack(caps, 1, n)
      end
      local caps, n = captures(ms, s1, e, true)
      return unpack(caps, 1, n)
    end
    s1 = s1 + 1
  until s1 > ls + 1 or anchor
  return nil
end

local function lua_gmatch(s, p, init)
  local ls = #s
  init = posrelat(init or 1, ls)
  if init > ls + 1 then init = ls + 2 end
  local ms = new_state(s, p, 1)
  local src, lastmatch = init, nil
  return function()
    while src <= ls + 1 do
      reset(ms)
      local e = do_match(ms, src, 1)
      if e and e ~= lastmatch then
        local start = src
        src, lastmatch = e, e
        local caps, n = captures(ms, start, e, true)
        return unpack(caps, 1, n)
      end
      src = src + 1
    end
    return nil
  end
end

local function add_value(ms, out, s, e, repl, tr)
  local value
  if tr == "function" then
    local caps, n = captures(ms, s, e, true)
    value = repl(unpack(caps, 1, n))
  elseif tr == "table" then
    value = repl[get_capture(ms, 1, s, e)]
  else -- a string (or number): % escapes
    local r = tostring(repl)
    local parts, i, lr = {}, 1, #r
    while i <= lr do
      local c = byte(r, i)
      if c == ESC then
        i = i + 1
        local d = byte(r, i)
        if d == ESC then parts[#parts + 1] = "%"
        elseif d and d >= 48 and d <= 57 then
          if d == 48 then parts[#parts + 1] = sub(ms.src, s, e - 1)
          else
            local cap = get_capture(ms, d - 48, s, e)
            parts[#parts + 1] = tostring(cap)
          end
        else
          perror("invalid use of '%' in replacement string")
        end
      else
        parts[#parts + 1] = sub(r, i, i)
      end
      i = i + 1
    end
    out[#out + 1] = concat(parts)
    return true
  end
  if not value then
    out[#out + 1] = sub(ms.src, s, e - 1)
    return false
  end
  local vt = type(value)
  if vt ~= "string" and vt ~= "number" then
    perror("invalid replacement value (a " .. vt .. ")")
  end
  out[#out + 1] = tostring(value)
  return true
end

local function lua_gsub(s, p, repl, max_n)
  local ls = #s
  local tr = type(repl)
  local anchor = byte(p, 1) == CARET
  local ms = new_state(s, p, anchor and 2 or 1)
  max_n = max_n or ls + 1
  local out, n, src, lastmatch = {}, 0, 1, nil
  while n < max_n do
    reset(ms)
    local e = do_match(ms, src, 1)
    if e and e ~= lastmatch then
      n = n + 1
      add_value(ms, out, src, e, repl, tr)
      src, lastmatch = e, e
    elseif src <= ls then
      out[#out + 1] = sub(s, src, src)
      src = src + 1
    else
      break
    end
    if anchor then break end
  end
  out[#out + 1] = sub(s, src)
  return concat(out), n
end

-- The estimate: how many positions the matcher may try times how far each repetition item
-- may backtrack. A repetition that ends the pattern never backtracks (nothing after it can
-- fail), so `[^\n]+` over a big text counts as linear. Each pattern's shape is turned once
-- into the longest subject the C matcher may take; a call then costs one length comparison.
local HUGE = math.huge

-- Largest n with starts(n) * n^reps * 2^opts <= LIMIT. Without backtracking items the
-- matcher is linear (subject x pattern length), like string.rep or table.concat: C keeps
-- it up to 100 x LIMIT simple steps (a 10 MB subject for a short pattern).
local function longest(reps, opts, anchored, lp)
  if reps == 0 and opts == 0 then
    return anchored and HUGE or math.floor(100 * LIMIT / math.max(lp, 1))
  end
  local budget = LIMIT / 2 ^ math.min(opts, 64)
  local power = reps + (anchored and 0 or 1)
  if power == 0 then return budget >= 1 and HUGE or -1 end
  return math.floor(budget ^ (1 / power)) - 1
end

local function shape_of(p)
  local reps, opts, anchor = 0, 0, byte(p, 1) == CARET
  local i, lp = anchor and 2 or 1, #p
  local last_rep_at_end = false
  local tail = lp -- the pattern's last character before any closing parentheses
  while tail >= 1 and byte(p, tail) == 41 do tail = tail - 1 end
  while i <= lp do
    local c = byte(p, i)
    local item_end
    if c == ESC then
      local nc = byte(p, i + 1)
      if nc == 98 then reps = reps + 1; item_end = i + 4 -- %bxy scans ahead like a repetition
      elseif nc == 102 then
        item_end = i + 2
        if byte(p, item_end) == LBRACK then
          item_end = item_end + 1
          if byte(p, item_end) == CARET then item_end = item_end + 1 end
          repeat
            local cc = byte(p, item_end)
            item_end = item_end + 1
            if cc == ESC then item_end = item_end + 1 end
          until item_end > lp or byte(p, item_end) == RBRACK
          item_end = item_end + 1
        end
      else item_end = i + 2 end
    elseif c == LBRACK then
      local j = i + 1
      if byte(p, j) == CARET then j = j + 1 end
      repeat
        local cc = byte(p, j)
        j = j + 1
        if cc == ESC then j = j + 1 end
      until j > lp or byte(p, j) == RBRACK
      item_end = j + 1
    else
      item_end = i + 1
    end
    local q = byte(p, item_end)
    if c ~= 40 and c ~= 41 and (q == 42 or q == 43 or q == 45) then -- * + -
      reps = reps + 1
      -- Only closing parentheses after it: it ends the pattern.
      last_rep_at_end = item_end == tail
      item_end = item_end + 1
    elseif c ~= 40 and c ~= 41 and q == 63 then -- ?
      opts = opts + 1
      item_end = item_end + 1
    end
    i = item_end
  end
  if last_rep_at_end then reps = reps - 1 end
  -- A plain find compares bytes with memchr/memcmp, ~500x cheaper than a matcher step.
  local plain = math.floor(500 * LIMIT / math.max(lp, 1))
  local is_plain = not find_c(p, SPECIALS)
  return {
    plain = plain,                                                -- find(s, p, i, true)
    find = is_plain and plain or longest(reps, opts, anchor, lp), -- find, match, gsub
    scan = longest(reps + (anchor and 1 or 0), opts, false, lp),  -- gmatch: '^' is literal
  }
end

local NOT_A_STRING = { plain = HUGE, find = HUGE, scan = HUGE } -- C coerces or raises
local shapes, cache_size = {}, 0

local function shape(p)
  local sh = shapes[p]
  if sh then return sh end
  if type(p) ~= "string" then return NOT_A_STRING end
  sh = shape_of(p)
  if cache_size >= 512 then shapes, cache_size = {}, 0 end
  shapes[p] = sh
  cache_size = cache_size + 1
  return sh
end

local function too_costly(s, p, anchored_ok)
  if type(s) ~= "string" then return false end
  local sh = shape(p)
  return #s > (anchored_ok and sh.find or sh.scan)
end

-- Errors from the Lua matcher read like the C ones: "bad argument #2 to 'find' (...)".
local raw_pcall = pcall
local function run(fname, f, ...)
  local r = table.pack(raw_pcall(f, ...))
  if r[1] then return unpack(r, 2, r.n) end
  local err = r[2]
  if type(err) == "table" and err.pattern_error then
    -- Level 2: callers reach `run` through a tail call, so level 2 is the plugin's line.
    error("bad argument #2 to '" .. fname .. "' (" .. err.pattern_error .. ")", 2)
  end
  error(err, 0)
end

function string.find(s, p, init, plain)
  if type(s) ~= "string" then return find_c(s, p, init, plain) end
  local sh = shapes[p] or shape(p)
  if #s <= (plain and sh.plain or sh.find) then return find_c(s, p, init, plain) end
  return run("find", lua_find, s, p, tointeger(init), plain, true)
end

function string.match(s, p, init)
  if type(s) ~= "string" or #s <= (shapes[p] or shape(p)).find then return match_c(s, p, init) end
  return run("match", lua_find, s, p, tointeger(init), false, false)
end

function string.gmatch(s, p, init)
  if type(s) ~= "string" or #s <= (shapes[p] or shape(p)).scan then return gmatch_c(s, p, init) end
  local it = lua_gmatch(s, p, tointeger(init))
  return function() return run("gmatch", it) end
end

function string.gsub(s, p, repl, n)
  if type(s) ~= "string" or #s <= (shapes[p] or shape(p)).find then return gsub_c(s, p, repl, n) end
  local tr = type(repl)
  if tr ~= "string" and tr ~= "number" and tr ~= "function" and tr ~= "table" then
    error("bad argument #3 to 'gsub' (string/function/table expected, got "
      .. (repl == nil and "no value" or tr) .. ")", 2)
  end
  return run("gsub", lua_gsub, s, p, repl, tointeger(n))
end

-- For tests: both matchers side by side.
return { lua_find = lua_find, lua_gmatch = lua_gmatch, lua_gsub = lua_gsub, c_find = find_c,
  c_match = match_c, c_gmatch = gmatch_c, c_gsub = gsub_c, too_costly = too_costly, LIMIT = LIMIT }
