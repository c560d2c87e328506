-- json.encode and json.array, written in Lua for speed (see json.py for the rules).
local json, sched = ...
local null, array_mark = json.null, json._array_mark
rawset(json, "_array_mark", nil)

local concat, format, sort = table.concat, string.format, table.sort
local mtype, utf8len, huge = math.type, utf8.len, math.huge
local getmetatable, next, type, tostring = getmetatable, next, type, tostring
local find, gsub = string.find, string.gsub

local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
for i = 0, 31 do
  local c = string.char(i)
  if not escapes[c] then escapes[c] = format("\\u%04x", i) end
end
escapes["\127"] = "\\u007f"

-- One encode runs at a time (it calls no plugin code and never waits), so it keeps its state
-- here: the output pieces, and the keys leading to the value being encoded. An error's path
-- ($.a[2]) is built from those keys only when there is an error.
local buf, n, keys = nil, 0, {}

local function path(depth, suffix)
  local parts = { "$" }
  for d = 1, depth do
    local k = keys[d]
    parts[d + 1] = type(k) == "number" and "[" .. k .. "]" or "." .. k
  end
  return concat(parts) .. (suffix or "")
end

local function fail(depth, message, suffix)
  error(path(depth, suffix) .. ": " .. message, 0)
end

local function quote(s, depth, suffix)
  if not utf8len(s) then fail(depth, "string is not valid UTF-8", suffix) end
  if not find(s, '[%c"\\]') then return '"' .. s .. '"' end
  return '"' .. gsub(s, '[%c"\\]', escapes) .. '"'
end

-- Object keys repeat from one message to the next: each short one is checked and quoted
-- once (with its colon): about a third off encoding small objects in a loop.
local quoted_keys, quoted_count = {}, 0
local function quote_key(k, depth)
  local q = quoted_keys[k]
  if q then return q end
  q = quote(k, depth, " (a key)") .. ":"
  if #k <= 64 then
    if quoted_count >= 4096 then quoted_keys, quoted_count = {}, 0 end
    quoted_keys[k] = q
    quoted_count = quoted_count + 1
  end
  return q
end

local function number(v, depth)
  if mtype(v) == "integer" then return format("%d", v) end
  if v ~= v then fail(depth, "cannot encode NaN (JSON has no NaN or infinity)") end
  if v == huge or v == -huge then
    fail(depth, "cannot encode " .. (v > 0 and "inf" or "-inf") .. " (JSON has no NaN or infinity)")
  end
  local s = format("%.14g", v)
  if tonumber(s) ~= v then s = format("%.17g", v) end
  if not find(s, "[%.eEn]") then s = s .. ".0" end
  return s
end

local encode

local function encode_table(t, seen, depth)
  if seen[t] then fail(depth, "table contains itself") end
  if depth > 200 then fail(depth, "nested too deeply") end
  local count, maxn, arraylike = 0, 0, true
  for k in next, t do
    count = count + 1
    if arraylike and mtype(k) == "integer" and k > 0 then
      if k > maxn then maxn = k end
    else
      arraylike = false
    end
  end
  if count == 0 then
    n = n + 1
    buf[n] = getmetatable(t) == array_mark and "[]" or "{}"
    return
  end
  seen[t] = true
  local child = depth + 1
  if arraylike then
    if maxn ~= count then
      fail(depth, "array has holes (" .. count .. " items, highest index " .. maxn
        .. "); fill them with json.null")
    end
    n = n + 1
    buf[n] = "["
    for i = 1, maxn do
      if i > 1 then n = n + 1; buf[n] = "," end
      keys[child] = i
      encode(t[i], seen, child)
    end
    n = n + 1
    buf[n] = "]"
  else
    local names, other = {}, nil
    for k in next, t do
      if type(k) == "string" then names[#names + 1] = k else other = other or k end
    end
    if other ~= nil then
      local shown = type(other) == "number" and " (" .. tostring(other) .. ")" or ""
      if #names > 0 then
        fail(depth, "table mixes " .. type(other) .. " keys" .. shown .. " with string keys;"
          .. " JSON objects need string keys")
      end
      fail(depth, "table has a " .. type(other) .. " key" .. shown .. "; JSON objects need "
        .. "string keys and arrays need keys 1..n")
    end
    if count > 1 then sort(names) end
    n = n + 1
    buf[n] = "{"
    for i = 1, count do
      local k = names[i]
      if i > 1 then n = n + 1; buf[n] = "," end
      n = n + 1
      buf[n] = quote_key(k, depth)
      keys[child] = k
      encode(t[k], seen, child)
    end
    n = n + 1
    buf[n] = "}"
  end
  seen[t] = nil
end

encode = function(v, seen, depth)
  local t = type(v)
  if t == "string" then n = n + 1; buf[n] = quote(v, depth)
  elseif t == "number" then n = n + 1; buf[n] = number(v, depth)
  elseif t == "boolean" then n = n + 1; buf[n] = v and "true" or "false"
  elseif t == "nil" or v == null then n = n + 1; buf[n] = "null"
  elseif t == "table" then encode_table(v, seen, depth)
  else fail(depth, "cannot encode a " .. t)
  end
end

local function encode_top(v)
  local t = type(v)
  if t == "string" then return quote(v, 0) end
  if t == "number" then return number(v, 0) end
  buf, n = {}, 0
  encode(v, {}, 0)
  local out = concat(buf, "", 1, n)
  buf = nil
  return out
end

--- json.encode(value) -> string
--- Encodes tables, strings, numbers, booleans and json.null. Raises on functions, cycles,
--- NaN, invalid UTF-8, holes in arrays and mixed keys; the message gives the path ($.a[2]).
function json.encode(value)
  local ok, result = pcall(encode_top, value)
  if not ok then
    buf = nil
    error("json.encode: " .. tostring(result), 2)
  end
  return result
end

--- json.array(t) -> t: marks `t` as an array, so an empty one encodes as [] (not {}).
function json.array(t)
  if t == nil then t = {} end
  if type(t) ~= "table" then
    error("json.array: t: expected table, got " .. type(t), 2)
  end
  return setmetatable(t, array_mark)
end
