"""The terminal UI against a real hub: Textual's headless pilot drives the app.

Each test starts a real `botster hub` (the `hub` fixture), runs `BotsterApp.run_test()` on its
socket and waits on conditions (`until`, a bounded loop around `pilot.pause()`), never on
fixed sleeps. Key translation and the keymap, which need no hub, are tested directly.
"""

from __future__ import annotations

import asyncio
import struct
import subprocess
from pathlib import Path

import pytest
from textual import events
from textual.app import App
from textual.widgets import DataTable, RadioButton, RichLog, Static

from botster.base.framing import BINARY, PTY_INPUT, SNAPSHOT, encode_frame, encode_session
from botster.transports.client import HubConnection
from botster.tui.app import (
    BotsterApp,
    CloseAgentScreen,
    CreateAgentScreen,
    HelpScreen,
    HubPanel,
    MessageScreen,
)
from botster.tui.keymap import ACTIONS, Keymap, KeymapError, load_keymap
from botster.tui.keys import key_bytes, mouse_bytes, paste_bytes
from botster.tui.terminal import TerminalView
from tests.conftest import write_plugin
from tests.test_pty import Terminal, socket_of

SIZE = (120, 36)

AGENT = r"""#!/usr/bin/env bash
printf '\033[32mready\033[0m 中文 %s\n' "$BOTSTER_AGENT_KEY"
printf '\033]0;tui agent %s\007' "$BOTSTER_AGENT_KEY"
while IFS= read -r line; do
  if [ "$line" = bell ]; then printf '\a'; fi
  printf '\033]0;last %s\007' "$line"
  echo "got:$line"
done
"""


def define_agent(repo: Path, name: str = "echo") -> None:
    d = repo / ".botster" / "agents" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "initialization").write_text(AGENT)
    subprocess.run(["git", "add", ".botster"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "agent"], cwd=repo, check=True)


async def until(pilot, predicate, what: str, timeout: float = 15.0) -> None:
    """Waits until `predicate()` is true, letting the app and the hub run; fails with `what`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            app = pilot.app
            raise AssertionError(
                f"timed out waiting for {what}; agents={app.agents!r}\n"
                f"screen:\n{app.terminal.screen_text()}"
            )
        await pilot.pause(0.02)


async def start_hub(hub, git_repo: Path, tmp_path: Path, **kwargs):
    define_agent(git_repo)
    return await hub(env={"BOTSTER_WORKTREE_BASE": str(tmp_path / "worktrees")}, **kwargs)


def agent(app: BotsterApp, key: str) -> dict | None:
    return next((a for a in app.agents if a["agent_key"] == key), None)


async def press_prefixed(pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press("ctrl+b", key)


async def test_agent_list_terminal_rendering_and_passthrough(hub, git_repo: Path, tmp_path: Path):
    proc = await start_hub(hub, git_repo, tmp_path)
    conn = await HubConnection.connect(socket_of(proc), "setup")
    await conn.request("create_agent", {"branch": "feature/one"})
    app = BotsterApp(socket_of(proc))
    async with app.run_test(size=SIZE) as pilot:
        await until(
            pilot,
            lambda: (a := agent(app, "feature-one")) and a["status"] == "running",
            "the agent running",
        )
        view = app.terminal
        await until(pilot, lambda: "ready 中文" in view.screen_text(), "the agent's first line")
        # The pane's size reached the PTY.
        assert (view.term.rows, view.term.cols) == (view.size.height, view.size.width)
        # Colours and wide characters render as the program wrote them.
        line = next(
            view.render_line(y)
            for y in range(view.size.height)
            if "ready" in view.render_line(y).text
        )
        segment = next(s for s in line if s.text.startswith("ready"))
        assert segment.style.color.number == 2  # green
        assert "中文" in line.text and line.cell_length == view.size.width
        # Keys go to the program; the cursor is drawn.
        await pilot.press(*"hello", "enter")
        await until(pilot, lambda: "got:hello" in view.screen_text(), "echo of typed text")
        cursor = view.term.cursor
        assert cursor.visible
        under = list(view.render_line(cursor.row).crop(cursor.col, cursor.col + 1))
        assert under and under[0].style.reverse, "the cursor cell is drawn inverted"
        # The list follows the agent: state, branch and the title it set (OSC 0).
        await until(
            pilot, lambda: agent(app, "feature-one").get("title") == "last hello", "the title"
        )
        prompt = str(app.agent_list.get_option_at_index(0).prompt)
        assert "feature-one" in prompt and "feature/one" in prompt and "running" in prompt
        assert "last hello" in prompt
        # Paste arrives as typed text.
        view.post_message(events.Paste("pasted one\npasted two\n"))
        await until(pilot, lambda: "got:pasted two" in view.screen_text(), "pasted lines")
    await conn.close()


async def test_scrollback_and_resize(hub, git_repo: Path, tmp_path: Path):
    proc = await start_hub(hub, git_repo, tmp_path)
    conn = await HubConnection.connect(socket_of(proc), "setup")
    await conn.request("create_agent", {"branch": "scroll"})
    app = BotsterApp(socket_of(proc))
    async with app.run_test(size=SIZE) as pilot:
        view = app.terminal
        await until(pilot, lambda: "ready" in view.screen_text(), "the agent's first line")
        view.post_message(events.Paste("".join(f"n{i}\n" for i in range(50))))
        await until(pilot, lambda: "got:n49" in view.screen_text(), "fifty lines")
        assert "got:n0\n" not in view.screen_text() + "\n"
        for _ in range(14):  # the mouse wheel, three lines a notch
            view.post_message(events.MouseScrollUp(view, 5, 5, 0, 0, 0, False, False, False))
        await until(pilot, lambda: view.scroll == 42, "scrolled back")
        shown = "\n".join(view.render_line(y).text for y in range(view.size.height))
        assert "got:n0" in shown and "got:n49" not in shown  # older lines, not the live ones
        assert "scrolled back 42 lines" in str(view.border_subtitle)
        await pilot.press("a")  # typing returns to the live screen
        assert view.scroll == 0
        await pilot.press("enter")
        # Resizing the app resizes the pane, the model and the PTY.
        before = (view.size.height, view.size.width)
        await pilot.resize_terminal(100, 30)
        await until(
            pilot,
            lambda: (
                (view.term.rows, view.term.cols) == (view.size.height, view.size.width)
                and app.link.size == (view.size.height, view.size.width)
            ),
            "the model following the pane",
        )
        # The session itself takes the pane's size: a fresh attach gets a snapshot of it. The
        # UI's resize request may still be on its way, so attach again until it has landed.
        sid = agent(app, "scroll")["session_id"]
        want, sizes = (view.size.height, view.size.width), []
        async with asyncio.timeout(20):
            while want not in sizes:
                term = Terminal()
                conn.on_frame = term.on_frame
                conn.subscribe("terminal", {"session_id": sid})
                while not term.frames:
                    term.changed.clear()
                    await term.changed.wait()
                sizes.append(struct.unpack_from("<HH", term.frames[0][1]))
                conn.send(
                    {"type": "unsubscribe", "channel": "terminal", "params": {"session_id": sid}}
                )
                await conn.request("ping")
        assert set(sizes) <= {want, before}, sizes  # the old size or the new, nothing else
    await conn.close()


async def test_create_agent_through_the_dialog(hub, git_repo: Path, tmp_path: Path):
    proc = await start_hub(hub, git_repo, tmp_path)
    app = BotsterApp(socket_of(proc))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.link.connected, "the connection")
        await press_prefixed(pilot, "n")
        await until(pilot, lambda: isinstance(app.screen, CreateAgentScreen), "the dialog")
        await pilot.pause()
        await pilot.press(*"feature/dialog", "tab", *"do the thing", "enter")
        await until(pilot, lambda: not isinstance(app.screen, CreateAgentScreen), "dialog closes")
        await until(
            pilot,
            lambda: (a := agent(app, "feature-dialog")) and a["status"] == "running",
            "the new agent running",
        )
        assert agent(app, "feature-dialog").get("prompt") == "do the thing"
        assert app.link.viewed == "feature-dialog"
        view = app.terminal
        await until(pilot, lambda: "ready 中文 feature-dialog" in view.screen_text(), "its screen")
        await pilot.press(*"typed", "enter")
        await until(pilot, lambda: "got:typed" in view.screen_text(), "the echo")
        # An error from the hub shows in the dialog.
        await press_prefixed(pilot, "n")
        await until(pilot, lambda: isinstance(app.screen, CreateAgentScreen), "the dialog again")
        select = app.screen.query_one("#definition")
        await until(pilot, lambda: select.value == "echo", "the definitions in the dialog")
        app.screen.query_one("#target").value = "feature/dialog"
        await pilot.press("enter")
        error = app.screen.query_one("#error")
        await until(
            pilot,
            lambda: (
                "already" in str(error.render()).lower() or "exist" in str(error.render()).lower()
            ),
            "the hub's refusal",
        )
        await pilot.press("escape")


async def test_attention_marked_rings_and_clears_on_view(hub, git_repo: Path, tmp_path: Path):
    proc = await start_hub(hub, git_repo, tmp_path)
    conn = await HubConnection.connect(socket_of(proc), "setup")
    await conn.request("create_agent", {"branch": "a1"})
    await conn.request("create_agent", {"branch": "a2"})
    app = BotsterApp(socket_of(proc))
    async with app.run_test(size=SIZE) as pilot:
        await until(
            pilot,
            lambda: len(app.agents) == 2 and all(a["status"] == "running" for a in app.agents),
            "two running agents",
        )
        await until(pilot, lambda: app.link.viewed == "a1", "a1 on screen")
        # a2 rings the bell while the user looks at a1: marked, and the terminal bell rings.
        a2 = agent(app, "a2")
        term = Terminal()
        conn.on_frame = term.on_frame
        conn.subscribe("terminal", {"session_id": a2["session_id"]})
        async with asyncio.timeout(10):
            while not term.frames or term.frames[0][0] != SNAPSHOT:
                term.changed.clear()
                await term.changed.wait()
        conn.send_raw(encode_frame(PTY_INPUT, encode_session(a2["session_id"], b"bell\n")))
        await until(pilot, lambda: agent(app, "a2")["attention"], "a2 marked")
        await until(pilot, lambda: "a2" in app.bells, "the bell")
        assert str(app.agent_list.get_option_at_index(1).prompt).startswith("! a2")
        # Looking at it clears the mark, in the hub too.
        await press_prefixed(pilot, "j")
        await until(pilot, lambda: app.link.viewed == "a2", "a2 on screen")
        await until(pilot, lambda: not agent(app, "a2")["attention"], "the mark cleared")
        listed = {a["agent_key"]: a for a in await conn.request("list_agents")}
        assert listed["a2"]["attention"] is False
        # A bell from the agent being viewed does not ring, and its mark is cleared at once.
        events_seen: list[dict] = []
        conn.on_message = events_seen.append
        conn.subscribe("hub")
        await conn.request("ping")  # the subscription is in place
        bells = len(app.bells)
        await pilot.press(*"bell", "enter")
        await until(
            pilot,
            lambda: any(e.get("event") == "agent_attention" for e in events_seen),
            "the hub announcing a2's bell",
        )
        # The hub queued the same event for the app in the same step: a round trip on the
        # app's own connection proves it has arrived.
        await app.link.request("ping")
        await pilot.pause()
        assert len(app.bells) == bells
        await until(pilot, lambda: not agent(app, "a2")["attention"], "the mark cleared again")
    await conn.close()


async def test_close_dialog_warns_about_uncommitted_work(hub, git_repo: Path, tmp_path: Path):
    proc = await start_hub(hub, git_repo, tmp_path)
    proc.expect_log(r"worktree kept")
    conn = await HubConnection.connect(socket_of(proc), "setup")
    await conn.request("create_agent", {"branch": "wip"})
    app = BotsterApp(socket_of(proc))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: (a := agent(app, "wip")) and a["status"] == "running", "agent")
        wt = Path(agent(app, "wip")["worktree"])
        (wt / "wip.txt").write_text("unsaved thoughts")
        await press_prefixed(pilot, "x")
        await until(pilot, lambda: isinstance(app.screen, CloseAgentScreen), "the close dialog")
        dialog = app.screen
        dialog.query_one("#delete", RadioButton).value = True
        risk = dialog.query_one("#risk", Static)
        await until(pilot, lambda: "wip.txt" in str(risk.render()), "what would be lost")
        assert "keep the worktree" in str(risk.render())
        await pilot.click("#close")
        await until(pilot, lambda: isinstance(app.screen, MessageScreen), "the hub's warning")
        body = str(app.screen.query_one("#body", Static).render())
        assert "worktree kept" in body and "wip.txt" in body
        await pilot.press("enter")
        await until(pilot, lambda: not app.agents, "the agent gone from the list")
        assert wt.is_dir()
    await conn.close()


BROKEN = "this is not lua ("
CHATTY = """
log.info("chatty says hello")
log.warn("chatty warns")
mcp.tool("chatty_tool", {description = "A tool from chatty", input_schema = {type = "object", properties = {}}}, function() return "ok" end)
"""


async def test_hub_panel_lists_plugins_errors_tools_and_log(hub, git_repo: Path, tmp_path: Path):
    proc = await start_hub(hub, git_repo, tmp_path, plugins={"broken": BROKEN, "chatty": CHATTY})
    proc.expect_log(r"broken")
    app = BotsterApp(socket_of(proc))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.link.connected, "the connection")
        await press_prefixed(pilot, "h")
        await until(pilot, lambda: isinstance(app.screen, HubPanel), "the hub panel")
        panel = app.screen
        plugins = panel.query_one("#plugins", DataTable)
        await until(pilot, lambda: plugins.row_count >= 2, "the plugin rows")
        broken = [str(c) for c in plugins.get_row("broken")]
        assert broken[1] != "loaded" and broken[3], broken
        assert "chatty" in [str(c) for c in plugins.get_row("chatty")]
        tools = panel.query_one("#tools", DataTable)
        assert "chatty_tool" in [str(c) for c in tools.get_row("chatty_tool")]
        info = str(panel.query_one("#hub-info", Static).render())
        assert app.link.hub_id in info
        # Where its files are (issue 12): the worktree base, the log (this hub logs to a
        # pipe, not the file `botster start` gives it), the repository.
        assert f"worktrees  {tmp_path / 'worktrees'}" in info, info
        assert f"repository {git_repo.resolve()}" in info and "log        the terminal" in info
        await panel.show_log("chatty")
        assert panel.log_lines[:2] == ["chatty says hello", "chatty warns"]
        assert panel.query_one("#log", RichLog).lines
        # The log follows the hub while the panel is open.
        write_plugin(git_repo, "chatty", CHATTY.replace("says hello", "says again"))
        await until(pilot, lambda: "chatty says again" in panel.log_lines, "the new log line")
        # A failed plugin's error leads its log, whole.
        await panel.show_log("broken")
        assert panel.log_lines[0].startswith("failed: ") and "broken" in panel.log_lines[0]
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HubPanel), "back to the main screen")


async def test_help_screen_and_custom_keybindings(hub, git_repo: Path, tmp_path: Path):
    config = {"tui_keys": {"new_agent": "c", "help": "f1", "prefix": "ctrl+a"}}
    proc = await start_hub(hub, git_repo, tmp_path, config=config)
    home = Path(proc.env["BOTSTER_HOME"])
    keymap = load_keymap(home)
    assert keymap.keys("new_agent") == ["c"] and keymap.prefix == ["ctrl+a"]
    app = BotsterApp(socket_of(proc), keymap)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.link.connected, "the connection")
        await pilot.press("ctrl+a", "f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        table = app.screen.query_one("#keys", DataTable)
        assert table.row_count == len(ACTIONS)
        rows = {str(table.get_row(a.name)[1]): str(table.get_row(a.name)[0]) for a in ACTIONS}
        assert rows["new_agent"] == "c" and rows["help"] == "f1" and rows["prefix"] == "ctrl+a"
        assert rows["detach"] == "d"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), "help closed")
        # The old prefix is now an ordinary key for the agent; the new one opens the dialog.
        await pilot.press("ctrl+a", "c")
        await until(pilot, lambda: isinstance(app.screen, CreateAgentScreen), "the dialog")
        await pilot.press("escape")


def test_keymap_validation():
    with pytest.raises(KeymapError, match=r"unknown action 'bogus' \(known: close_agent, detach"):
        Keymap({"bogus": "x"})
    with pytest.raises(KeymapError, match=r"tui_keys.help: expected a key name"):
        Keymap({"help": 3})
    with pytest.raises(KeymapError, match=r"'n' is bound to both 'new_agent' and 'help'"):
        Keymap({"help": "n"})
    assert Keymap({"help": "f1, question_mark"}).keys("help") == ["f1", "question_mark"]


def test_load_keymap_errors(tmp_path: Path):
    assert load_keymap(tmp_path).key("prefix") == "ctrl+b"
    (tmp_path / "config.json").write_text('{"tui_keys": {"nope": "x"}}')
    with pytest.raises(KeymapError, match=r"config.json: tui_keys: unknown action 'nope'"):
        load_keymap(tmp_path)
    (tmp_path / "config.json").write_text('{"tui_keys": []}')
    with pytest.raises(KeymapError, match="expected an object"):
        load_keymap(tmp_path)


@pytest.mark.parametrize(
    ("key", "char", "app_cursor", "expected"),
    [
        ("a", "a", False, b"a"),
        ("A", "A", False, b"A"),
        ("ctrl+a", "\x01", False, b"\x01"),
        ("ctrl+c", "\x03", False, b"\x03"),
        ("ctrl+z", "\x1a", False, b"\x1a"),
        ("enter", "\r", False, b"\r"),
        ("tab", "\t", False, b"\t"),
        ("shift+tab", None, False, b"\x1b[Z"),
        ("escape", "\x1b", False, b"\x1b"),
        ("backspace", "\x7f", False, b"\x7f"),
        ("up", None, False, b"\x1b[A"),
        ("up", None, True, b"\x1bOA"),
        ("ctrl+left", None, False, b"\x1b[1;5D"),
        ("shift+right", None, False, b"\x1b[1;2C"),
        ("home", None, False, b"\x1b[H"),
        ("end", None, True, b"\x1bOF"),
        ("pageup", None, False, b"\x1b[5~"),
        ("pagedown", None, False, b"\x1b[6~"),
        ("delete", None, False, b"\x1b[3~"),
        ("insert", None, False, b"\x1b[2~"),
        ("f1", None, False, b"\x1bOP"),
        ("f5", None, False, b"\x1b[15~"),
        ("f12", None, False, b"\x1b[24~"),
        ("ctrl+f5", None, False, b"\x1b[15;5~"),
        ("alt+x", "x", False, b"\x1bx"),
        ("ctrl+alt+a", None, False, b"\x1b\x01"),
        ("space", " ", False, b" "),
        ("ctrl+space", None, False, b"\x00"),
        ("ctrl+backslash", None, False, b"\x1c"),
        ("exclamation_mark", "!", False, b"!"),
        ("é", "é", False, "é".encode()),
    ],
)
def test_key_bytes(key, char, app_cursor, expected):
    assert key_bytes(key, char, app_cursor=app_cursor) == expected


def test_paste_and_mouse_bytes():
    assert paste_bytes("a\nb", bracketed=False) == b"a\rb"
    assert paste_bytes("a\r\nb", bracketed=True) == b"\x1b[200~a\rb\x1b[201~"
    assert paste_bytes("x\x1b[201~y", bracketed=True) == b"\x1b[200~xy\x1b[201~"
    # SGR (1006): the button stays on release, which ends in "m"; modifiers add 4/8/16.
    assert mouse_bytes(64, 0, 0, encoding=1006) == b"\x1b[<64;1;1M"
    assert mouse_bytes(2 | 16, 299, 99, encoding=1006, release=True) == b"\x1b[<18;300;100m"
    # X10: bytes offset by 32, a release is button 3, cells past 223 clipped.
    assert mouse_bytes(65, 4, 2) == b"\x1b[M" + bytes([32 + 65, 37, 35])
    assert mouse_bytes(0 | 4, 300, 0, release=True) == b"\x1b[M" + bytes([32 + 7, 255, 33])
    # urxvt (1015): decimal, button offset by 32; UTF-8 (1005): big cells as characters.
    assert mouse_bytes(32 + 0, 9, 9, encoding=1015) == b"\x1b[64;10;10M"
    assert mouse_bytes(1, 299, 0, encoding=1005) == "\x1b[M!\u014c!".encode()


TUI_PLUGIN = """
tui.on_connected(function(id)
  log.info("RESULT connected " .. json.encode({id = id, clients = #tui.clients()}))
  tui.send({kind = "notify", text = "hello from the plugin"})
  tui.send_binary("\\1\\2\\3")
end)
tui.on_message(function(msg, id)
  log.info("RESULT tui_msg " .. json.encode(msg))
end)
tui.on_disconnected(function(id) log.info("RESULT gone " .. json.encode(id)) end)
require("lib.commands").register("test.forward", function()
  local h = assert(pty.spawn({cmd = "sh", args = {"-c", "echo forwarded; read l; echo in:$l; read x"}}))
  return {fwd = assert(tui.create_pty_forwarder({session_id = h:id()})), sid = h:id()}
end)
require("lib.commands").register("test.send", function(args) return tui.send(args) end)
"""


async def test_tui_primitive_reaches_the_app_and_back(hub, git_repo: Path, tmp_path: Path):
    proc = await start_hub(hub, git_repo, tmp_path, plugins={"tuip": TUI_PLUGIN})
    other = await HubConnection.connect(socket_of(proc), "not-a-tui")
    seen_by_other: list[dict] = []
    other.on_message = seen_by_other.append
    app = BotsterApp(socket_of(proc))
    async with app.run_test(size=SIZE) as pilot:
        connected = await proc.result("connected")
        assert connected["clients"] == 1 and connected["id"] == app.link.conn.client_id
        await until(
            pilot,
            lambda: {"kind": "notify", "text": "hello from the plugin"} in app.tui_messages,
            "tui.send reaching the app",
        )
        await until(pilot, lambda: app.tui_binaries == [b"\x01\x02\x03"], "tui.send_binary")
        assert app.send_tui({"ping": 1, "from": "app"})
        assert await proc.result("tui_msg") == {"ping": 1, "from": "app"}
        # The message did not upset the client protocol (no error came back).
        assert await app.link.request("ping") == {"pong": True}
        assert await other.request("test.send", {"x": 1}) == 1
        await until(pilot, lambda: {"x": 1} in app.tui_messages, "the second message")
    assert await proc.result("gone") == connected["id"]
    assert not [m for m in seen_by_other if m.get("type") == "tui"]
    # A raw TUI client gets forwarded sessions and may type into them.
    tui_conn = await HubConnection.connect(socket_of(proc), "tui")
    term = Terminal()
    tui_conn.on_frame = lambda f: f.type != BINARY and term.on_frame(f)
    fwd = await other.request("test.forward")
    async with asyncio.timeout(10):
        while not term.frames:
            term.changed.clear()
            await term.changed.wait()
    assert term.frames[0][0] == SNAPSHOT
    tui_conn.send_raw(encode_frame(PTY_INPUT, encode_session(fwd["sid"], b"typed\n")))
    await term.wait_for(b"in:typed")
    await tui_conn.close()
    await other.close()


async def test_no_hub_at_the_socket_exits_with_a_clear_message(tmp_path: Path):
    app = BotsterApp(tmp_path / "nothing.sock")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.return_code is not None, "the app giving up")
    assert app.return_code == 1


class _PaneApp(App):
    """Just the terminal pane, recording what it asks the app to do."""

    def __init__(self) -> None:
        super().__init__()
        self.typed: list[bytes] = []
        self.ui_keys: list[str] = []

    def compose(self):
        yield TerminalView(["ctrl+b"], self.typed.append, id="terminal")

    def on_mount(self) -> None:
        self.query_one(TerminalView).focus()

    def on_terminal_view_ui_key(self, message: TerminalView.UiKey) -> None:
        self.ui_keys.append(message.key)


async def test_terminal_pane_passthrough_prefix_modes_and_wheel():
    app = _PaneApp()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(TerminalView)
        view.load_snapshot("s1", 22, 78, b"plain screen")
        await pilot.press("a", "ctrl+c", "up", "tab", "escape", "f5")
        await pilot.pause()
        assert app.typed == [b"a", b"\x03", b"\x1b[A", b"\t", b"\x1b", b"\x1b[15~"]
        # The prefix: the next key is the UI's; the prefix twice sends it to the program.
        await pilot.press("ctrl+b", "n", "ctrl+b", "ctrl+b", "ctrl+b", "escape")
        await pilot.pause()
        assert app.ui_keys == ["n"] and app.typed[-1] == b"\x02" and len(app.typed) == 7
        # Modes the program turned on: application cursor keys, bracketed paste, mouse.
        view.feed(b"\x1b[?1h\x1b[?2004h\x1b[?1000h\x1b[?1006h")
        await pilot.press("up")
        view.post_message(events.Paste("x\ny"))
        await pilot.pause()
        assert app.typed[-2:] == [b"\x1bOA", b"\x1b[200~x\ry\x1b[201~"]
        assert await mouse(pilot, events.MouseScrollUp, 4, 5) == [b"\x1b[<64;4;5M"]
        assert view.scroll == 0


async def test_page_keys_scroll_a_shell_and_reach_a_full_screen_program():
    """Issue 12: Shift+PgUp/PgDn always page the scrollback; plain PgUp does when the program
    is a shell (primary screen, no mouse), and is the program's on the alternate screen."""
    app = _PaneApp()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(TerminalView)
        view.load_snapshot("s1", 22, 78, b"\r\n".join(b"line %d" % i for i in range(100)))
        page = 21
        # Both ways keys arrive: Textual's key events, and the raw bytes of RawInputDriver.
        await pilot.press("pageup")
        assert view.scroll == page and app.typed == []
        view.raw_input(b"\x1b[5~")
        assert view.scroll == 2 * page and app.typed == []
        await pilot.press("pagedown")
        view.raw_input(b"\x1b[6~")
        assert view.scroll == 0 and app.typed == []
        view.raw_input(b"\x1b[6~")  # at the live screen PgDn is the program's again
        assert app.typed == [b"\x1b[6~"]
        # Shift: the scrollback, whatever the program; keys around it still reach the program.
        view.raw_input(b"a\x1b[5;2~")
        assert view.scroll == page and app.typed[-1] == b"a"
        view.raw_input(b"\x1b[6;2~b")
        assert view.scroll == 0 and app.typed[-1] == b"b"
        # A full-screen program (the alternate screen) gets plain PgUp/PgDn, in both paths.
        view.feed(b"\x1b[?1049h")
        await pilot.press("pageup")
        view.raw_input(b"\x1b[5~\x1b[6~")
        assert view.scroll == 0 and b"".join(app.typed[-3:]) == b"\x1b[5~" * 2 + b"\x1b[6~"
        typed = len(app.typed)
        await pilot.press("shift+pageup")  # the UI's (the alternate screen has no history)
        assert len(app.typed) == typed
        # Mouse reporting on the primary screen: the program takes the page keys too.
        view.feed(b"\x1b[?1049l\x1b[?1000h")
        view.raw_input(b"\x1b[5~")
        assert view.scroll == 0 and app.typed[-1] == b"\x1b[5~"
        view.raw_input(b"\x1b[5;2~")
        assert view.scroll == page
        await pilot.press("x")  # typing returns to the live screen
        assert view.scroll == 0 and app.typed[-1] == b"x"


async def mouse(pilot, event_class, x: int, y: int, button: int = 0, **mods) -> list[bytes]:
    """Delivers a mouse event at screen cell (x, y) the way the driver does (to the app, which
    routes it to the widget there); returns what the pane sent to the program."""
    app = pilot.app
    before = len(app.typed)
    mods = {"shift": False, "meta": False, "ctrl": False} | mods
    app.post_message(event_class(None, x, y, 0, 0, button, screen_x=x, screen_y=y, **mods))
    await pilot.pause()
    return app.typed[before:]


async def test_clicks_and_drags_reach_a_program_that_asked_for_the_mouse():
    app = _PaneApp()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(TerminalView)
        view.load_snapshot("s1", 22, 78, b"\r\n".join(b"line %d" % i for i in range(60)))
        # No mouse mode: clicks are the UI's, the wheel scrolls back through the history.
        assert await mouse(pilot, events.MouseDown, 4, 5, 1) == []
        assert await mouse(pilot, events.MouseUp, 4, 5, 1) == []
        assert await mouse(pilot, events.MouseScrollUp, 4, 5) == [] and view.scroll == 3
        await mouse(pilot, events.MouseScrollDown, 4, 5)
        assert view.scroll == 0
        # 1000 + SGR: presses and releases, at the cell inside the border, with modifiers.
        view.feed(b"\x1b[?1000h\x1b[?1006h")
        assert await mouse(pilot, events.MouseDown, 4, 5, 1) == [b"\x1b[<0;4;5M"]
        assert await mouse(pilot, events.MouseMove, 9, 5, 1) == []  # 1000: no drags
        assert await mouse(pilot, events.MouseUp, 9, 5, 1) == [b"\x1b[<0;9;5m"]
        assert await mouse(pilot, events.MouseDown, 2, 1, 3, ctrl=True) == [b"\x1b[<18;2;1M"]
        assert await mouse(pilot, events.MouseUp, 2, 1, 3, ctrl=True) == [b"\x1b[<18;2;1m"]
        assert await mouse(pilot, events.MouseDown, 0, 5, 1) == []  # on the border
        # 1002: drags report motion with the button held, clamped to the pane when outside.
        view.feed(b"\x1b[?1002h")
        assert await mouse(pilot, events.MouseDown, 10, 10, 1) == [b"\x1b[<0;10;10M"]
        assert await mouse(pilot, events.MouseMove, 12, 11, 1) == [b"\x1b[<32;12;11M"]
        assert await mouse(pilot, events.MouseMove, 79, 23, 1) == [b"\x1b[<32;78;22M"]
        assert await mouse(pilot, events.MouseUp, 79, 23, 1) == [b"\x1b[<0;78;22m"]
        assert await mouse(pilot, events.MouseMove, 12, 11) == []  # no button: 1003 only
        # 1003 and X10 bytes: any motion is button 3 + 32; a release is button 3.
        view.feed(b"\x1b[?1003h\x1b[?1006l")
        assert await mouse(pilot, events.MouseMove, 12, 11) == [b"\x1b[M" + bytes([67, 44, 43])]
        assert await mouse(pilot, events.MouseDown, 1, 1, 2) == [b"\x1b[M" + bytes([33, 33, 33])]
        assert await mouse(pilot, events.MouseUp, 1, 1, 2) == [b"\x1b[M" + bytes([35, 33, 33])]
        # Scrolled back, the mouse is the UI's again until the view returns to the screen.
        view.feed(b"\x1b[?1003l\x1b[?1002l\x1b[?1000l")
        await mouse(pilot, events.MouseScrollUp, 4, 5)
        view.feed(b"\x1b[?1000h")
        assert await mouse(pilot, events.MouseDown, 4, 5, 1) == [] and view.scroll == 3
