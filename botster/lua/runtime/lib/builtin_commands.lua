-- The commands every hub answers (see docs/protocol.md for their arguments and results).
-- Plugins add their own with require("lib.commands").register(name, fn, opts).
local commands = require("lib.commands")
local client = require("lib.client")

local M = {}

function M.install()
  commands.register("ping", function(args)
    return { pong = true, echo = args.echo }
  end, { description = "Answers {pong = true}; echoes args.echo" })

  commands.register("hub.info", function()
    local plugins = hub.loader.list_plugins()
    return { hub_id = hub.hub_id(), plugins = #plugins, tools = mcp.count() }
  end, { description = "The hub's id and what it runs" })

  commands.register("hub.stop", function()
    hub.quit()
    return { stopping = true }
  end, { description = "Stops the hub (agents' sessions keep running)" })

  commands.register("commands.list", function()
    return commands.list()
  end, { description = "Every command this hub answers" })

  commands.register("clients.list", function()
    return client.list()
  end, { description = "Connected clients (socket, terminal UI, browser) and what each watches" })

  commands.register("plugins.list", function()
    return json.array(hub.loader.list_plugins())
  end, { description = "Plugins with their layer, status, last error and reload count" })

  commands.register("plugins.reload", function(args)
    if type(args.name) ~= "string" then return nil, "plugins.reload: args.name: expected string" end
    local ok, err = hub.loader.reload_plugin(args.name)
    if not ok then return nil, err end
    return { reloaded = args.name }
  end, { description = "Reloads one plugin by name" })

  commands.register("plugins.enable", function(args)
    if type(args.name) ~= "string" then return nil, "plugins.enable: args.name: expected string" end
    local lifted = _botster.lift_quarantine(args.name)
    local ok, err = hub.loader.reload_plugin(args.name)
    if not ok then return nil, err end
    return { enabled = args.name, was_quarantined = lifted }
  end, { description = "Lifts a plugin's quarantine (it took the hub down) and loads it" })

  commands.register("plugins.log", function(args)
    if type(args.name) ~= "string" then return nil, "plugins.log: args.name: expected string" end
    local lines = log.recent(args.name)
    local limit = math.type(args.limit) == "integer" and args.limit or #lines
    local out = {}
    for i = math.max(1, #lines - limit + 1), #lines do out[#out + 1] = lines[i] end
    return json.array(out)
  end, { description = "A plugin's recent log lines: args {name, limit?} -> [{level, message}]" })

  commands.register("terminal.resize", function(args)
    local h = type(args.session_id) == "string" and pty.get(args.session_id)
    if not h then return nil, "terminal.resize: no session " .. tostring(args.session_id) end
    local ok, err = h:resize(args.rows, args.cols)
    if not ok then return nil, err end
    return { rows = args.rows, cols = args.cols }
  end, { description = "Resizes a session's terminal: args {session_id, rows, cols}" })

  commands.register("sessions.list", function()
    return json.array(pty.list())
  end, { description = "Every PTY session of this hub" })

  -- Web push: the browser asks for the key, then hands over its PushSubscription.
  commands.register("push.vapid_public_key", function()
    local key, err = push.vapid_public_key()
    if not key then return nil, err end
    return { public_key = key }
  end, { description = "This machine's VAPID public key: {public_key} (base64url P-256 point)" })

  commands.register("push.subscribe", function(args)
    local ok, err = push.subscribe(args.subscription)
    if not ok then return nil, err end
    return { subscribed = true }
  end, { description = "Stores a browser's push subscription: args {subscription = {endpoint, "
    .. "keys = {p256dh, auth}}}" })

  commands.register("push.unsubscribe", function(args)
    if type(args.endpoint) ~= "string" then
      return nil, "push.unsubscribe: endpoint: expected string, got " .. type(args.endpoint)
    end
    local removed, err = push.unsubscribe(args.endpoint)
    if removed == nil then return nil, err end
    return { unsubscribed = removed }
  end, { description = "Forgets a push subscription: args {endpoint} -> {unsubscribed}" })

  commands.register("mcp.list_tools", function()
    return mcp.list_tools()
  end, { description = "MCP tools: name, description, input_schema, source" })

  commands.register("mcp.call_tool", function(args, ctx)
    if type(args.name) ~= "string" then return nil, "mcp.call_tool: args.name: expected string" end
    local context = {}
    local sub = client.subscription(ctx.client_id, "mcp")
    for k, v in pairs(sub and type(sub.context) == "table" and sub.context or {}) do context[k] = v end
    for k, v in pairs(type(args.context) == "table" and args.context or {}) do context[k] = v end
    context.hub_id = hub.hub_id()
    local result, err = mcp.call_tool(args.name, args.arguments or {}, context)
    if result == nil then
      return { is_error = true, content = { { type = "text", text = err } } }
    end
    return { is_error = false, content = { { type = "text", text = result } } }
  end, { description = "Calls an MCP tool: args {name, arguments, context}" })
end

return M
