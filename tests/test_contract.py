"""Every function the spec lists exists, with the spec's name, as a function (for the modules
built so far: action_cable and push come with their issues)."""

from __future__ import annotations

import json

# From shared/spec/lua-primitives.md, for the modules the hub core provides.
SPEC = {
    "log": ["info", "warn", "error", "debug"],
    "json": ["encode", "decode"],
    "fs": [
        "read",
        "write",
        "exists",
        "is_dir",
        "listdir",
        "copy",
        "stat",
        "mkdir",
        "rmdir",
        "delete",
        "rename",
        "resolve_safe",
    ],
    "config": ["get", "all", "set", "env", "lua_path", "data_dir"],
    "secrets": ["get", "set", "delete"],
    "events": ["on", "off", "emit"],
    "timer": ["after", "every", "cancel"],
    "watch": ["directory", "unwatch"],
    "http": ["get", "post", "put", "delete", "request"],
    "websocket": ["connect", "send", "close"],
    "hub": [
        "hub_id",
        "server_id",
        "get_worktrees",
        "register_agent",
        "unregister_agent",
        "quit",
        "detect_repo",
        "handle_webrtc_offer",
        "handle_ice_candidate",
        "request_ratchet_restart",
    ],
    "socket": [
        "on_client_connected",
        "on_client_disconnected",
        "on_message",
        "send",
        "send_binary",
        "create_pty_forwarder",
    ],
    "pty": ["spawn"],
    "worktree": [
        "find",
        "list",
        "create_async",
        "delete",
        "repo_root",
        "is_git_repo",
        "copy_from_patterns",
    ],
    "hub_discovery": ["list", "is_running", "socket_path"],
    "hub_client": ["connect", "on_message", "send", "close"],
    "update": ["check", "install"],
    "webrtc": [
        "on_peer_connected",
        "on_peer_disconnected",
        "on_message",
        "send",
        "send_binary",
        "create_pty_forwarder",
    ],
    "connection": ["generate", "regenerate", "copy_to_clipboard"],
    "mcp": ["tool", "remove_tool", "reset", "list_tools", "call_tool", "count"],
    "hub.state": ["get", "set", "clear", "keys"],
    "hub.hooks": [
        "on",
        "off",
        "notify",
        "has_observers",
        "enable",
        "disable",
        "intercept",
        "unintercept",
        "call",
        "has_interceptors",
    ],
    "hub.loader": ["load_plugin", "reload_plugin", "unload_plugin", "list_plugins", "reload"],
}


async def test_every_spec_function_exists(hub):
    proc = await hub(
        plugins={
            "contract": f"""
        local spec = json.decode('{json.dumps(SPEC)}')
        local missing = {{}}
        for module, names in pairs(spec) do
          local t = _G
          for part in module:gmatch("[^.]+") do t = t[part] end
          for _, name in ipairs(names) do
            local ok, v = pcall(function() return t[name] end)
            if not ok or type(v) ~= "function" then missing[#missing + 1] = module .. "." .. name end
          end
        end
        table.sort(missing)
        log.info("RESULT missing " .. json.encode(json.array(missing)))
    """
        }
    )
    assert await proc.result("missing") == []
