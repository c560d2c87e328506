-- connection.copy_to_clipboard (see connection.py): OSC 52 through the attached terminal
-- UIs when there are any (so it works over SSH), else the system clipboard.
local connection = ...
local system_clipboard = connection._system_clipboard
rawset(connection, "_system_clipboard", nil)

--- connection.copy_to_clipboard() -> true | nil, err
--- Copies the current pairing URL: to every attached terminal UI (which sets the user's
--- clipboard with OSC 52), else with wl-copy, xclip, xsel or pbcopy. Returns nil, err when
--- there is neither or the code cannot be made.
function connection.copy_to_clipboard()
  local code, err = connection.generate()
  if not code then return nil, err end
  if tui and #tui.clients() > 0 then
    tui.send({ type = "clipboard", text = code.url })
    return true
  end
  return system_clipboard(code.url)
end
