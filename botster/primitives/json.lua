-- json.encode and json.array, written in Lua for speed (see json.py for the rules).
local json, sched = ...
local null, array_mark = json.null, json._array_mark
rawset(json, "_array_mark", nil)

local concat, format, sort = table.concat, string.format, table.sort
local mtype, utf8len, huge = math.type, utf8.len, math.huge
local getmetatable, next, type, tostring = getmetatable, next, type, tostring

local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
for i = 0, 31 do
  local c = string.char(i)
  if not escapes[c] then escapes[c] = format("\\u%04x", i) end
end
escapes["\127"] = "\\u007f"

local function quote(s, path)
  if not s:find('[%c"\\]') then
    if not utf8len(s) then error(path .. ": string is not valid UTF-8", 0) end
    return '"' .. s .. '"'
  end
  if not utf8len(s) then error(path .. ": string is not valid UTF-8", 0) end
  return '"' .. s:gsub('[%c"\\]', escapes) .. '"'
end

local function number(v, path)
  if mtype(v) == "integer" then return format("%d", v) end
  if v ~= v then error(path .. ": cannot encode NaN (JSON has no NaN or infinity)", 0) end
  if v == huge or v == -huge then
    error(path .. ": cannot encode " .. (v > 0 and "inf" or "-inf")
      .. " (JSON has no NaN or infinity)", 0)
  end
  local s = format("%.14g", v)
  if tonumber(s) ~= v then s = format("%.17g", v) end
  if not s:find("[%.eEn]") then s = s .. ".0" end
  return s
end

local encode

local function encode_table(t, buf, path, seen, depth)
  if seen[t] then error(path .. ": table contains itself", 0) end
  if depth > 200 then error(path .. ": nested too deeply", 0) end
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
    buf[#buf + 1] = getmetatable(t) == array_mark and "[]" or "{}"
    return
  end
  seen[t] = true
  if arraylike then
    if maxn ~= count then
      error(path .. ": array has holes (" .. count .. " items, highest index " .. maxn
        .. "); fill them with json.null", 0)
    end
    buf[#buf + 1] = "["
    for i = 1, maxn do
      if i > 1 then buf[#buf + 1] = "," end
      encode(t[i], buf, path .. "[" .. i .. "]", seen, depth + 1)
    end
    buf[#buf + 1] = "]"
  else
    local keys, other = {}, nil
    for k in next, t do
      if type(k) == "string" then keys[#keys + 1] = k else other = other or k end
    end
    if other ~= nil then
      local shown = type(other) == "number" and " (" .. tostring(other) .. ")" or ""
      if #keys > 0 then
        error(path .. ": table mixes " .. type(other) .. " keys" .. shown .. " with string keys;"
          .. " JSON objects need string keys", 0)
      end
      error(path .. ": table has a " .. type(other) .. " key" .. shown .. "; JSON objects need "
        .. "string keys and arrays need keys 1..n", 0)
    end
    sort(keys)
    buf[#buf + 1] = "{"
    for i = 1, #keys do
      local k = keys[i]
      if i > 1 then buf[#buf + 1] = "," end
      buf[#buf + 1] = quote(k, path .. " (a key)")
      buf[#buf + 1] = ":"
      encode(t[k], buf, path .. "." .. k, seen, depth + 1)
    end
    buf[#buf + 1] = "}"
  end
  seen[t] = nil
end

encode = function(v, buf, path, seen, depth)
  local t = type(v)
  if t == "string" then buf[#buf + 1] = quote(v, path)
  elseif t == "number" then buf[#buf + 1] = number(v, path)
  elseif t == "boolean" then buf[#buf + 1] = v and "true" or "false"
  elseif t == "nil" or v == null then buf[#buf + 1] = "null"
  elseif t == "table" then encode_table(v, buf, path, seen, depth)
  else error(path .. ": cannot encode a " .. t, 0)
  end
end

local function encode_top(v)
  local t = type(v)
  if t == "string" then return quote(v, "$") end
  if t == "number" then return number(v, "$") end
  local buf = {}
  encode(v, buf, "$", {}, 0)
  return concat(buf)
end

--- json.encode(value) -> string
--- Encodes tables, strings, numbers, booleans and json.null. Raises on functions, cycles,
--- NaN, invalid UTF-8, holes in arrays and mixed keys; the message gives the path ($.a[2]).
function json.encode(value)
  local ok, result = pcall(encode_top, value)
  if not ok then error("json.encode: " .. tostring(result), 2) end
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
