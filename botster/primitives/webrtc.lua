-- webrtc.create_pty_forwarder (see webrtc.py): the original's {agent_index, pty_index} name a
-- terminal through the agent lifecycle, which lives in Lua (lib/agents.lua); resolved here,
-- then the Python function gets the session id.
local webrtc = ...
local create = webrtc.create_pty_forwarder

function webrtc.create_pty_forwarder(opts)
  if type(opts) == "table" and opts.session_id == nil
      and math.type(opts.agent_index) == "integer" and opts.agent_index >= 0
      and (opts.pty_index == nil or (math.type(opts.pty_index) == "integer" and opts.pty_index >= 0)) then
    local sid, err = require("lib.agents").session_at(opts.agent_index, opts.pty_index or 0)
    if not sid then return nil, "webrtc.create_pty_forwarder: " .. err end
    local resolved = {}
    for k, v in pairs(opts) do resolved[k] = v end
    resolved.session_id = sid
    return create(resolved)
  end
  return create(opts) -- checks the arguments (and names what is wrong)
end
