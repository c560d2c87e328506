-- hub.init: boots the hub's Lua side and says goodbye at shutdown.
-- Order: protected core (state, hooks, loader) -> libraries (mcp, the client protocol and
-- its built-in commands, the agent lifecycle, agent attention as web push, remote-access
-- signalling) -> user entry point
-- ($BOTSTER_HOME/lua/user/init.lua) -> plugins from both layers -> hot-reload watchers.
local state = require("hub.state")
local hooks = require("hub.hooks")
local loader = require("hub.loader")

hub.state, hub.hooks, hub.loader = state, hooks, loader
mcp = require("lib.mcp")
require("lib.client").install()
require("lib.builtin_commands").install()
require("lib.agents").install()
require("lib.attention").install()
require("lib.remote").install()

local M = {}

function M.boot()
  loader.load_user_init()
  local loaded, failed = loader.load_all()
  loader.start_watching()
  _botster.ready(loaded, failed)
end

function M.shutdown()
  hooks.notify("shutdown")
  events.emit("shutdown")
end

return M
