-- pty.spawn and the session handle (see pty.py). Handles are plain tables with methods;
-- the Python functions they call are private (`pty._write`...).
local pty, sched = ...
local check = sched.check
local raw = {}
for _, name in ipairs({ "_spawn", "_write", "_resize", "_kill", "_close", "_info",
  "_snapshot", "_text" }) do
  raw[name] = pty[name]
  rawset(pty, name, nil)
end

local Handle = {}
Handle.__index = Handle
Handle.__name = "pty handle"
Handle.__tostring = function(h) return "pty handle " .. h._id end

local function self_check(h, method)
  if getmetatable(h) ~= Handle then
    error("pty handle: use handle:" .. method .. "(...) with a colon, not handle."
      .. method .. "(...)", 3)
  end
end

--- handle:write(data) -> true | nil, err: types `data` into the terminal.
function Handle:write(data)
  self_check(self, "write")
  check("handle:write", "data", data, "string")
  return raw._write(self._id, data)
end

--- handle:resize(rows, cols) -> true | nil, err: resizes the PTY (the program gets SIGWINCH).
function Handle:resize(rows, cols)
  self_check(self, "resize")
  return raw._resize(self._id, rows, cols)
end

--- handle:kill() -> true | nil, err: SIGTERM, then SIGKILL after 3 s, to the program's group.
function Handle:kill()
  self_check(self, "kill")
  return raw._kill(self._id)
end

--- handle:close() -> bool: ends the session for good (stops the program if it runs).
function Handle:close()
  self_check(self, "close")
  return raw._close(self._id)
end

--- handle:is_alive() -> bool: whether the program still runs.
function Handle:is_alive()
  self_check(self, "is_alive")
  local info = raw._info(self._id)
  return info ~= nil and info.running
end

--- handle:port() -> number | nil: the forwarded loopback port ($PORT in the program).
function Handle:port()
  self_check(self, "port")
  return self._port
end

--- handle:pid() -> number: the program's process id.
function Handle:pid()
  self_check(self, "pid")
  return self._pid
end

--- handle:id() -> string: the session id (stable across hub restarts).
function Handle:id()
  self_check(self, "id")
  return self._id
end

--- handle:info() -> {id, pid, labels, running, exit_code, signal, port} | nil
function Handle:info()
  self_check(self, "info")
  return raw._info(self._id)
end

--- handle:snapshot() -> {data, rows, cols, cursor_row, cursor_col, ...} | nil, err
--- `data` redraws the exact screen in a fresh terminal of rows x cols. Waits.
function Handle:snapshot()
  self_check(self, "snapshot")
  return raw._snapshot(self._id)
end

--- handle:text() -> string | nil, err: the visible screen as plain text. Waits.
function Handle:text()
  self_check(self, "text")
  return raw._text(self._id)
end

local function wrap(info)
  return setmetatable({ _id = info.id, _pid = info.pid, _port = info.port }, Handle)
end

--- pty.spawn(config) -> handle | nil, err
--- config: {cmd, args = {}, env = {}, cwd?, rows = 24, cols = 80, port_forward = false,
--- labels = {}}. Starts `cmd` in a new terminal, in a session process that keeps running if
--- the hub stops. With port_forward, a free loopback port is given to the program as $PORT.
--- Waits until the program runs; the session's events (`process_exited`...) are held until
--- the calling code has run on past its pty.spawn calls, as if spawn had returned at once,
--- so listeners added right after never miss them. Raises on a bad config; nil, err if it
--- cannot start.
--- Example: local h = assert(pty.spawn({cmd = "bash", cwd = "/tmp"})); h:write("ls\n")
function pty.spawn(config)
  check("pty.spawn", "config", config, "table")
  local info, err = raw._spawn(config)
  if not info then return nil, err end
  return wrap(info)
end

--- pty.get(id) -> handle | nil: a handle for an existing session (e.g. one adopted after a
--- hub restart).
function pty.get(id)
  check("pty.get", "id", id, "string")
  local info = raw._info(id)
  return info and wrap(info) or nil
end
