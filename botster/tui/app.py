"""The Textual app: the agent list, the live terminal, dialogs, the hub panel and help.

Layout: the agents on the left (state and attention markers, branch, title), the selected
agent's terminal on the right (``terminal.TerminalView``), a footer with the UI's keys. The
terminal pane has the keyboard: every key goes to the agent except the prefix (``ctrl+b``);
the key after it is a UI action (``keymap.py``). Screens: create agent, close agent (with
what would be lost), the hub panel (hub id, plugins and their errors, MCP tools, plugin log),
help, and a confirmation before stopping the hub.

The app is a client of the socket protocol like any other: everything it knows comes through
``hub_link.HubLink``. Leaving it (detach) never touches the hub or the agents; only the
stop-hub action, confirmed, stops the hub (the agents' sessions keep running even then).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.keys import format_key, key_to_character
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    OptionList,
    RadioButton,
    RadioSet,
    RichLog,
    Select,
    Static,
)
from textual.widgets.option_list import Option

from botster.tui.hub_link import HubLink, RequestFailed
from botster.tui.keymap import ACTIONS, Keymap
from botster.tui.keys import key_bytes
from botster.tui.notify import desktop_notification
from botster.tui.rawinput import RawInputDriver
from botster.tui.terminal import TerminalView

__all__ = ["BotsterApp", "agent_label"]

_STATUS = {
    "running": ("●", "green"),  # not ▶, which reads as "the selected one"
    "exited": ("■", "yellow"),
    "failed": ("✗", "red"),
    "creating_worktree": ("…", "cyan"),
    "spawning": ("…", "cyan"),
}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def agent_label(agent: dict[str, Any]) -> Text:
    """How the list shows one agent: marker, name, then branch · state · title."""
    status = agent.get("status") or "?"
    icon, colour = _STATUS.get(status, ("?", "white"))
    state = status
    if status == "exited":
        code = agent.get("exit_code")
        state = f"exited {code}" if code is not None else "exited"
    elif status == "failed" and agent.get("error"):
        state = f"failed: {agent['error']}"
    text = Text()
    if agent.get("attention"):
        text.append("! ", style="bold black on yellow")
    else:
        text.append(f"{icon} ", style=colour)
    text.append(agent.get("agent_key", "?"), style="bold")
    text.append(f"\n  {agent.get('branch') or ''} · ", style="dim")
    text.append(state, style=colour)
    if agent.get("title"):
        text.append(f"\n  {agent['title']}", style="italic")
    return text


def hub_info_text(info: dict[str, Any], socket_path: str) -> Text:
    """The hub panel's header: the hub, where its files are, what it runs (``hub.info``)."""
    text = Text()
    text.append("Hub ", style="bold")
    text.append(f"{info.get('hub_id', '')}")
    if info.get("pid"):
        text.append(f" (pid {info['pid']})")
    rows = [
        ("repository", info.get("repo")),
        ("worktrees", info.get("worktree_base")),
        ("log", info.get("log") or "the terminal that runs the hub (not started by botster start)"),
        ("socket", socket_path),
    ]
    for label, value in rows:
        if value:
            text.append(f"\n{label:<11}", style="dim")
            text.append(str(value))
    text.append(
        f"\n{_count(info.get('plugins', 0), 'plugin')} · {_count(info.get('tools', 0), 'MCP tool')}"
    )
    return text


# Dialogs ----------------------------------------------------------------------------------


class CreateAgentScreen(ModalScreen[str | None]):
    """Create an agent: definition, branch or issue number, prompt. Returns the agent key."""

    DEFAULT_CSS = """
    CreateAgentScreen { align: center middle; }
    CreateAgentScreen > Vertical {
        width: 72; height: auto; border: thick $accent; background: $surface; padding: 1 2;
    }
    CreateAgentScreen Label.error { color: $error; }
    CreateAgentScreen Horizontal { height: auto; margin-top: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    AUTO_FOCUS = "#target"

    def __init__(self) -> None:
        super().__init__()
        self.definitions: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]Create an agent[/b]")
            yield Label("Definition")
            yield Select([], prompt="loading definitions…", id="definition")
            yield Label("Branch, or issue number")
            yield Input(placeholder="feature/login or 42", id="target")
            yield Label("Prompt (optional)")
            yield Input(placeholder="what the agent should do", id="prompt")
            yield Label("", id="error", classes="error")
            with Horizontal():
                yield Button("Create", variant="primary", id="create")
                yield Button("Cancel", id="cancel")

    async def on_mount(self) -> None:
        # The dialog opens at once (keys typed right away land in it); definitions follow.
        app = self.app
        assert isinstance(app, BotsterApp)
        select = self.query_one("#definition", Select)
        error = self.query_one("#error", Label)
        try:
            self.definitions = await app.link.request("agent_definitions")
        except (RequestFailed, ConnectionError) as e:
            select.prompt = "no definitions"
            error.update(f"cannot list agent definitions: {e}")
            return
        names = [d["name"] for d in self.definitions]
        if not names:
            select.prompt = "no definitions"
            error.update("No agent definitions: create .botster/agents/<name>/initialization")
            return
        select.prompt = "choose a definition"  # never "loading" once loaded
        select.set_options([(n, n) for n in names])
        select.value = names[0]

    def on_key(self, event: events.Key) -> None:
        # Keys typed while the dialog was opening reach the screen before its focus is set;
        # a focused field takes printable keys itself, so these would otherwise be lost.
        focused = self.focused
        if event.is_printable and event.character and isinstance(focused, Input):
            event.stop()
            focused.insert_text_at_cursor(event.character)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    @on(Button.Pressed, "#create")
    async def _create(self) -> None:
        error = self.query_one("#error", Label)
        target = self.query_one("#target", Input).value.strip()
        if not target:
            error.update("Give a branch name or an issue number.")
            return
        args: dict[str, Any] = {}
        definition = self.query_one("#definition", Select).value
        if isinstance(definition, str):
            args["agent"] = definition
        if target.lstrip("#").isdigit():
            args["issue"] = int(target.lstrip("#"))
        else:
            args["branch"] = target
        prompt = self.query_one("#prompt", Input).value
        if prompt:
            args["prompt"] = prompt
        app = self.app
        assert isinstance(app, BotsterApp)
        try:
            result = await app.link.request("create_agent", args)
        except (RequestFailed, ConnectionError) as e:
            error.update(str(e))
            return
        self.dismiss(result.get("agent_key"))


async def _git(cwd: str, *args: str) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL,
        )
    except OSError:  # the worktree is gone
        return ""
    out, _ = await proc.communicate()
    return out.decode(errors="replace") if proc.returncode == 0 else ""


async def work_at_risk(worktree: str, branch: str | None) -> list[str]:
    """What deleting a worktree would lose: uncommitted files and commits on no other branch.

    Best effort (git run locally, the UI and the hub share the machine); an unreadable
    worktree gives an empty list, and the hub makes the final check anyway.
    """
    if not worktree:
        return []
    lost: list[str] = []
    status = await _git(worktree, "status", "--porcelain", "--untracked-files=all")
    files = [line[3:] for line in status.splitlines() if line.strip()]
    if files:
        shown = ", ".join(files[:8]) + (f", … ({len(files)} in all)" if len(files) > 8 else "")
        lost.append(f"uncommitted changes: {shown}")
    if branch:
        log = await _git(
            worktree,
            "log",
            "--oneline",
            "-n",
            "20",
            "HEAD",
            "--not",
            f"--exclude={branch}",
            "--branches",
            "--remotes",
        )
        commits = [c for c in log.splitlines() if c.strip()]
        if commits:
            lost.append(f"{len(commits)} commit(s) on no other branch: " + "; ".join(commits[:3]))
    return lost


class CloseAgentScreen(ModalScreen[dict[str, Any] | None]):
    """Close an agent: keep or delete its worktree. Returns close_agent's result."""

    DEFAULT_CSS = """
    CloseAgentScreen { align: center middle; }
    CloseAgentScreen > Vertical {
        width: 76; height: auto; border: thick $warning; background: $surface; padding: 1 2;
    }
    CloseAgentScreen #risk { color: $warning; margin-top: 1; }
    CloseAgentScreen #error { color: $error; }
    CloseAgentScreen Horizontal { height: auto; margin-top: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, agent: dict[str, Any]) -> None:
        super().__init__()
        self.agent = agent
        self.risk: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]Close agent {self.agent['agent_key']}?[/b]")
            yield Label(f"Worktree: {self.agent.get('worktree') or '-'}")
            with RadioSet(id="mode"):
                yield RadioButton("Keep the worktree", value=True, id="keep")
                yield RadioButton("Delete the worktree and its branch", id="delete")
            yield Static("", id="risk")
            yield Label("", id="error")
            with Horizontal():
                yield Button("Close agent", variant="error", id="close")
                yield Button("Cancel", id="cancel")

    async def on_mount(self) -> None:
        self.risk = await work_at_risk(self.agent.get("worktree") or "", self.agent.get("branch"))
        self._show_risk()

    @property
    def delete(self) -> bool:
        return self.query_one("#delete", RadioButton).value

    def _show_risk(self) -> None:
        risk = self.query_one("#risk", Static)
        if self.delete and self.risk:
            risk.update(
                "Deleting would lose work, so the hub will keep the worktree:\n"
                + "\n".join(f"  • {r}" for r in self.risk)
            )
        else:
            risk.update("")

    @on(RadioSet.Changed)
    def _mode_changed(self) -> None:
        self._show_risk()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#close")
    async def _close(self) -> None:
        app = self.app
        assert isinstance(app, BotsterApp)
        try:
            result = await app.link.request(
                "close_agent",
                {"agent_key": self.agent["agent_key"], "delete_worktree": self.delete},
            )
        except (RequestFailed, ConnectionError) as e:
            self.query_one("#error", Label).update(str(e))
            return
        self.dismiss(result)


class MessageScreen(ModalScreen[None]):
    """A message to read and dismiss (a close warning, an error)."""

    DEFAULT_CSS = """
    MessageScreen { align: center middle; }
    MessageScreen > Vertical {
        width: 76; height: auto; border: thick $warning; background: $surface; padding: 1 2;
    }
    MessageScreen Button { margin-top: 1; }
    """
    BINDINGS = [Binding("escape,enter", "dismiss_message", "OK")]

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]{self.title_text}[/b]")
            yield Static(self.body, id="body")
            yield Button("OK", id="ok")

    def action_dismiss_message(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no."""

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 64; height: auto; border: thick $error; background: $surface; padding: 1 2;
    }
    ConfirmScreen Horizontal { height: auto; margin-top: 1; }
    """
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question)
            with Horizontal():
                yield Button("Yes", variant="error", id="yes")
                yield Button("No", id="no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class HelpScreen(ModalScreen[None]):
    """Every key of the UI."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 90; height: 90%; border: thick $accent; background: $surface; padding: 1 2;
    }
    HelpScreen DataTable { height: auto; }
    """
    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, keymap: Keymap) -> None:
        super().__init__()
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        prefix = " or ".join(self.keymap.prefix)
        with Vertical():
            yield Static(
                "[b]Keys[/b]\n\n"
                f"In the terminal pane every key goes to the agent, except the prefix "
                f"[b]{prefix}[/b]: the key after it is one of the UI keys below (press the "
                f"prefix twice to send it to the agent). In the agent list and the screens the "
                f"UI keys work directly. Mouse wheel or shift+pgup/pgdn: scroll the terminal "
                f"back; plain pgup too when the program is a shell (not a full-screen program "
                f"such as vim, less or htop, which get the key). Change keys in "
                f'$BOTSTER_HOME/config.json, "tui_keys": {{"action": "key"}}.\n'
            )
            yield DataTable(id="keys", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#keys", DataTable)
        table.add_columns("key", "action", "what it does")
        for action in ACTIONS:
            table.add_row(
                ", ".join(format_key(k) for k in self.keymap.keys(action.name)),
                action.name,
                action.description,
                key=action.name,
            )

    def action_close(self) -> None:
        self.dismiss(None)


class HubPanel(Screen[None]):
    """The hub: its id, plugins with status and errors, MCP tools, a plugin's recent log."""

    DEFAULT_CSS = """
    HubPanel VerticalScroll { padding: 0 1; }
    HubPanel DataTable { height: auto; max-height: 14; margin-bottom: 1; }
    HubPanel .section { text-style: bold; margin-top: 1; }
    HubPanel RichLog { height: 12; border: round $panel; }
    """
    BINDINGS = [
        Binding("escape,q", "close", "Back"),
        Binding("r", "refresh", "Refresh"),
        Binding("e", "enable", "Enable plugin"),
    ]

    LOG_POLL_S = 1.0  # the shown plugin's log follows the hub while the panel is open

    def __init__(self) -> None:
        super().__init__()
        self.log_lines: list[str] = []  # the shown plugin's log messages
        self.shown: str | None = None  # the plugin whose log is shown
        self.errors: dict[str, str] = {}  # plugin -> its last error
        self._shown_lines: list[Any] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("", id="hub-info")
            yield Label("Plugins", classes="section")
            yield DataTable(id="plugins", cursor_type="row")
            yield Label("MCP tools", classes="section")
            yield DataTable(id="tools", cursor_type="row")
            yield Label("Plugin log (select a plugin above)", classes="section", id="log-title")
            yield RichLog(id="log", wrap=True, markup=False)
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one("#plugins", DataTable).add_columns("plugin", "status", "layer", "error")
        self.query_one("#tools", DataTable).add_columns("tool", "source", "description")
        await self.action_refresh()
        self.set_interval(self.LOG_POLL_S, self._follow_log)

    async def _follow_log(self) -> None:
        if self.shown is not None:
            await self.show_log(self.shown)

    async def action_refresh(self) -> None:
        app = self.app
        assert isinstance(app, BotsterApp)
        link = app.link
        try:
            info, plugins, tools = await asyncio.gather(
                link.request("hub.info"),
                link.request("plugins.list"),
                link.request("mcp.list_tools"),
            )
        except (RequestFailed, ConnectionError) as e:
            self.query_one("#hub-info", Static).update(f"hub unreachable: {e}")
            return
        self.query_one("#hub-info", Static).update(hub_info_text(info, str(link.socket_path)))
        self.errors = {p.get("name", ""): p["error"] for p in plugins if p.get("error")}
        table = self.query_one("#plugins", DataTable)
        table.clear()
        for p in plugins:
            table.add_row(
                p.get("name", ""),
                Text(p.get("status") or "", style="red" if p.get("error") else "green"),
                p.get("source") or "",
                Text(p.get("error") or "", style="red"),
                key=p.get("name"),
            )
        tools_table = self.query_one("#tools", DataTable)
        tools_table.clear()
        for t in tools:
            desc = (t.get("description") or "").splitlines()
            tools_table.add_row(
                t.get("name", ""), t.get("source") or "", desc[0] if desc else "", key=t.get("name")
            )
        if plugins:
            await self.show_log(plugins[0].get("name", ""))

    async def action_enable(self) -> None:
        """Loads the highlighted plugin again, lifting its quarantine (``plugins.enable``)."""
        app = self.app
        assert isinstance(app, BotsterApp)
        table = self.query_one("#plugins", DataTable)
        if not table.row_count:
            return
        name = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        try:
            await app.link.request("plugins.enable", {"name": str(name)})
        except (RequestFailed, ConnectionError) as e:
            self.notify(f"{name}: {e}", severity="error")
        await self.action_refresh()

    @on(DataTable.RowHighlighted, "#plugins")
    async def _plugin_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value:
            await self.show_log(str(event.row_key.value))

    async def show_log(self, name: str) -> None:
        """Shows one plugin's recent log lines (``plugins.log``)."""
        app = self.app
        assert isinstance(app, BotsterApp)
        log = self.query_one("#log", RichLog)
        self.query_one("#log-title", Label).update(f"Plugin log: {name}")
        try:
            lines = await app.link.request("plugins.log", {"name": name})
        except (RequestFailed, ConnectionError) as e:
            lines = [{"level": "ERROR", "message": f"could not read the log: {e}"}]
        if name in self.errors:  # a failed plugin's error first, whole, whatever the log kept
            lines = [{"level": "ERROR", "message": f"failed: {self.errors[name]}"}, *lines]
        if name == self.shown and lines == self._shown_lines:
            return  # nothing new (the panel polls)
        self.shown, self._shown_lines = name, lines
        log.clear()
        for line in lines:
            level = line.get("level", "")
            style = {"ERROR": "red", "WARNING": "yellow", "DEBUG": "dim"}.get(level, "")
            log.write(Text(f"{level:<7} {line.get('message', '')}", style=style))
        self.log_lines = [line.get("message", "") for line in lines]

    def action_close(self) -> None:
        self.dismiss(None)


# The app ----------------------------------------------------------------------------------


class BotsterApp(App[int], inherit_bindings=False):
    """The terminal UI of one hub.

    Args:
        socket_path: the hub's socket.
        keymap: the UI's keys (default: ``load_keymap()``'s result is passed by the CLI).
    """

    TITLE = "botster"
    ENABLE_COMMAND_PALETTE = False
    # The terminal has the keyboard from the start (Textual's default focuses the first
    # focusable widget, the agent list, when the screen activates).
    AUTO_FOCUS = "#terminal"
    CSS = """
    #sidebar { width: 34; border: round $panel; }
    #sidebar:focus-within { border: round $accent; }
    #agents { height: 1fr; border: none; }
    #agents-title { padding: 0 1; text-style: bold; }
    Screen.-narrow #sidebar { width: 24; }
    Screen.-tiny #sidebar, Screen.-zoomed #sidebar, Screen.-zoomed Header { display: none; }
    """
    # Narrow terminals: a slimmer agent list under 110 columns, none under 70 (the terminal
    # pane keeps at least 44 columns); the zoom key hides it at any width.
    HORIZONTAL_BREAKPOINTS = [(0, "-tiny"), (70, "-narrow"), (110, "-wide")]

    def __init__(self, socket_path: Path | str, keymap: Keymap | None = None) -> None:
        # ANSI colours reach the terminal untouched, so an agent's palette colours are the
        # user's own, not Textual's theme approximation of them.
        # RawInputDriver: the terminal pane gets the keys' bytes as the terminal sent them
        # (Textual's key decoding loses Esc followed quickly by a key, alt+b, ctrl+h ...).
        super().__init__(ansi_color=True, driver_class=RawInputDriver)
        self.keymap = keymap or Keymap()
        self.link = HubLink(socket_path, self)
        self.agents: list[dict[str, Any]] = []
        self.bells: list[str] = []  # agents that rang the bell while not viewed
        self.tui_messages: list[Any] = []
        self.tui_binaries: list[bytes] = []
        self.hub_stopped = False
        self.hub_gone = False  # at detach: the hub was not there (killed, not yet back)
        self._select_after: str | None = None
        self._ui_keys_pending = 0  # UI keys after the prefix whose action has not run yet
        # Made here, not queried: the link reports (a lost hub, late output) until it is
        # closed, which can be after the screen's widgets are gone.
        self._pane = TerminalView(self.keymap.prefix, self.link.send_input, id="terminal")
        # The footer says the prefix once ("ctrl+b then n new  x close ..."), in short words,
        # so it fits an 80-column terminal.
        for action in ACTIONS:
            self.bind(
                self.keymap.key(action.name),
                action.name,
                description=action.short or action.description.split(":")[0],
                show=bool(action.short),
                key_display=format_key(self.keymap.keys(action.name)[0]),
            )

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="sidebar"):
                yield Label("Agents", id="agents-title")
                yield OptionList(id="agents")
            yield self._pane
        yield Footer()

    @property
    def terminal(self) -> TerminalView:
        """The terminal pane."""
        return self._pane

    @property
    def agent_list(self) -> OptionList:
        """The agent list."""
        return self.query_one("#agents", OptionList)

    async def on_mount(self) -> None:
        self.terminal.focus()
        try:
            await self.link.connect()
        except (OSError, ConnectionError, TimeoutError) as e:
            self.exit(
                1,
                return_code=1,
                message=f"botster: cannot reach the hub at {self.link.socket_path}: {e}",
            )

    async def on_unmount(self) -> None:
        await self.link.close()

    async def on_event(self, event: events.Event) -> None:
        # A key for the terminal pane goes to it at once. Textual would pass it on through
        # the pane's own message queue: one more turn of a loop that may be busy drawing a
        # flood, straight onto the key-to-echo latency. The pane takes every key (it has no
        # bindings and stops them all), so nothing else would have seen it anyway.
        if isinstance(event, events.Key) and not event.is_forwarded:
            if self.focused is self._pane:
                self.app_focus = True
                if self._pane.handle_key(event):
                    self._ui_keys_pending += 1
            else:
                await super().on_event(event)
            self._release_raw()
            return
        await super().on_event(event)

    def _display(self, screen: Screen, renderable: Any) -> None:
        # One write per frame, at once when the terminal has nothing queued
        # (RawInputDriver.begin_frame); Textual would queue its pieces for its writer thread.
        driver = self._driver
        if not isinstance(driver, RawInputDriver) or not driver.begin_frame():
            super()._display(screen, renderable)
            return
        try:
            super()._display(screen, renderable)
        finally:
            driver.end_frame()

    # Raw keys (RawInputDriver) -----------------------------------------------------------

    def raw_keys(self) -> bool:
        """Whether the terminal pane has the keyboard (asked from the driver's thread)."""
        pane = self._pane
        return not pane.prefix_armed and len(self.screen_stack) == 1 and self.focused is pane

    def raw_prefix(self) -> list[bytes]:
        """The bytes of the prefix key(s), which leave raw input for one UI key."""
        out = []
        for key in self.keymap.prefix:
            data = key_bytes(key, key_to_character(key))
            if data:
                out.append(data)
        return out

    def raw_input(self, data: bytes) -> None:
        """Keys for the program, as the terminal sent them."""
        if not self.app_focus:
            self.app_focus = True
        self._pane.raw_input(data)

    def raw_paste(self, text: bytes) -> None:
        """A paste for the program."""
        self._pane.raw_paste(text)

    def _release_raw(self) -> None:
        # After the prefix the driver gives keys to Textual until the UI key's action ran,
        # so keys typed into the dialog it opens land in the dialog.
        if self._ui_keys_pending or self._pane.prefix_armed:
            return
        release = getattr(self._driver, "release_raw", None)
        if release is not None:
            release()

    # LinkListener ------------------------------------------------------------------------

    def link_state(self, connected: bool, detail: str) -> None:
        if connected:
            self.sub_title = f"hub {detail[:12]}"
        else:
            self.sub_title = f"disconnected ({detail}), reconnecting…"
            self.terminal.clear("The hub is gone; reconnecting…")

    def agents_updated(self, agents: list[dict[str, Any]]) -> None:
        self.agents = agents
        option_list = self.agent_list
        keys = [a["agent_key"] for a in agents]
        current = [o.id for o in option_list.options]
        if keys == current:
            for i, agent in enumerate(agents):
                option_list.replace_option_prompt_at_index(i, agent_label(agent))
        else:
            option_list.set_options(Option(agent_label(a), id=a["agent_key"]) for a in agents)
        wanted = self._select_after if self._select_after in keys else self.link.viewed
        if wanted not in keys:
            wanted = keys[0] if keys else None
        if wanted is None:
            self.link.view(None)
            keys_hint = f"{format_key(self.keymap.prefix[0])} {self.keymap.keys('new_agent')[0]}"
            self.terminal.clear(f"No agents. Press {keys_hint} to create one.")
            return
        if wanted == self._select_after:
            self._select_after = None
        index = keys.index(wanted)
        if option_list.highlighted != index:
            option_list.highlighted = index
        self._view(wanted)

    def ring_bell(self, agent_key: str, info: dict[str, Any]) -> None:
        self.bells.append(agent_key)
        what = str(info.get("body") or info.get("title") or info.get("kind") or "attention")
        self.notify(f"{agent_key}: {what}", title="Agent needs you", severity="warning")
        # The user's terminal: its bell, and a desktop notification where it makes them.
        self.bell()
        if not self.is_headless and self._driver is not None:
            text = desktop_notification(f"botster {agent_key}", what, os.environ)
            self._driver.write(text)

    def terminal_snapshot(self, session_id: str, rows: int, cols: int, data: bytes) -> None:
        self.terminal.load_snapshot(session_id, rows, cols, data)

    def terminal_output(self, session_id: str, data: bytes) -> None:
        self.terminal.feed(data)

    def terminal_exited(self, session_id: str, code: int) -> None:
        self.terminal.process_exited(code)

    def tui_message(self, data: Any) -> None:
        self.tui_messages.append(data)
        del self.tui_messages[:-100]
        if isinstance(data, dict) and data.get("kind") == "notify":
            self.notify(str(data.get("text", "")), title="plugin")
        if isinstance(data, dict) and data.get("type") == "clipboard":
            # connection.copy_to_clipboard: OSC 52 reaches the user's terminal, even over SSH.
            self.copy_to_clipboard(str(data.get("text", "")))
            self.notify("pairing URL copied to the clipboard", title="botster")

    def tui_binary(self, data: bytes) -> None:
        self.tui_binaries.append(data)
        del self.tui_binaries[:-100]

    # Viewing -----------------------------------------------------------------------------

    def _view(self, agent_key: str) -> None:
        agent = next((a for a in self.agents if a["agent_key"] == agent_key), None)
        if agent is None:
            return
        self.terminal.border_title = f"{agent_key} · {agent.get('branch') or ''}"
        if self.link.viewed != agent_key or not agent.get("session_id"):
            if not agent.get("session_id"):
                self.terminal.clear(f"{agent_key}: {agent.get('status')}…")
            elif self.link.attached != agent.get("session_id"):
                self.terminal.clear("attaching…")
        self.link.view(agent_key)

    @on(OptionList.OptionHighlighted, "#agents")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_index != self.agent_list.highlighted or event.option_id is None:
            return  # stale: the list was rebuilt since
        if event.option_id != self.link.viewed:
            self._view(event.option_id)

    @on(OptionList.OptionSelected, "#agents")
    def _selected(self) -> None:
        self.terminal.focus()

    def on_app_focus(self) -> None:
        self.link.set_focused(True)

    def on_app_blur(self) -> None:
        self.link.set_focused(False)

    # Terminal messages -------------------------------------------------------------------

    def on_terminal_view_resized(self, message: TerminalView.Resized) -> None:
        self.link.resize(message.rows, message.cols, force=message.force)

    async def on_terminal_view_ui_key(self, message: TerminalView.UiKey) -> None:
        try:
            action = self.keymap.action_for(message.key)
            if action is None:
                help_key = self.keymap.keys("help")[0]
                self.notify(
                    f"{message.key} is not a UI key (prefix, then {help_key}, lists them)",
                    severity="warning",
                )
                return
            await self.run_action(action)
        finally:
            self._ui_keys_pending = max(0, self._ui_keys_pending - 1)
            self._release_raw()

    # Actions -----------------------------------------------------------------------------

    def send_tui(self, data: Any) -> bool:
        """Sends a message to plugins' ``tui.on_message``."""
        return self.link.send_tui(data)

    def _selected_agent(self) -> dict[str, Any] | None:
        return next((a for a in self.agents if a["agent_key"] == self.link.viewed), None)

    def action_prefix(self) -> None:
        # Outside the terminal pane the prefix hands the keyboard back to the terminal,
        # armed, so "prefix, key" works the same everywhere; on other screens the UI keys
        # work directly, so the prefix has nothing to do there.
        if self.screen is not self.screen_stack[0]:
            return
        self.terminal.focus()
        self.terminal.prefix_armed = True
        self.terminal._changed()

    def action_new_agent(self) -> None:
        def created(key: str | None) -> None:
            if key:
                self._select_after = key
                self.notify(f"creating {key}…")
                self.terminal.focus()

        self.push_screen(CreateAgentScreen(), created)

    def action_close_agent(self) -> None:
        agent = self._selected_agent()
        if agent is None:
            self.notify("no agent selected", severity="warning")
            return

        def closed(result: dict[str, Any] | None) -> None:
            if not result:
                return
            if result.get("warning"):
                self.push_screen(MessageScreen(f"{result['closed']} closed", result["warning"]))
            else:
                done = "worktree deleted" if result.get("worktree_deleted") else "worktree kept"
                self.notify(f"{result['closed']} closed ({done})")

        self.push_screen(CloseAgentScreen(agent), closed)

    def _move(self, delta: int) -> None:
        option_list = self.agent_list
        if not option_list.option_count:
            return
        current = option_list.highlighted if option_list.highlighted is not None else 0
        option_list.highlighted = (current + delta) % option_list.option_count

    def action_next_agent(self) -> None:
        self._move(1)

    def action_prev_agent(self) -> None:
        self._move(-1)

    @property
    def zoomed(self) -> bool:
        """Whether the terminal pane has the whole window (the zoom key)."""
        return self.screen_stack[0].has_class("-zoomed")

    def action_zoom(self) -> None:
        base = self.screen_stack[0]
        base.toggle_class("-zoomed")
        if self.zoomed and self.focused is not self._pane:
            self.terminal.focus()

    def action_focus_list(self) -> None:
        if self.zoomed or self.screen_stack[0].has_class("-tiny"):
            self.screen_stack[0].remove_class("-zoomed", "-tiny")  # the list must be seen
        self.agent_list.focus()

    def action_focus_terminal(self) -> None:
        self.terminal.focus()

    def action_scroll_up(self) -> None:
        self.terminal.scroll_lines(max(1, self.terminal.size.height - 1))

    def action_scroll_down(self) -> None:
        self.terminal.scroll_lines(-max(1, self.terminal.size.height - 1))

    def action_hub_panel(self) -> None:
        self.push_screen(HubPanel())

    def action_pairing(self) -> None:
        from botster.tui.pairing import PairingScreen  # its screen, loaded when first opened

        self.push_screen(PairingScreen())

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.keymap))

    def action_detach(self) -> None:
        self.hub_gone = not self.link.connected  # the link closes as the app ends
        self.exit(0)

    def action_stop_hub(self) -> None:
        async def answered(yes: bool | None) -> None:
            if not yes:
                return
            self.link.expect_close()
            with contextlib.suppress(RequestFailed, ConnectionError):
                await self.link.request("hub.stop")
            self.hub_stopped = True
            self.exit(0, message="botster: hub stopped (agents' sessions keep running)")

        self.push_screen(
            ConfirmScreen(
                "Stop the hub? Plugins stop; the agents' sessions keep running and the next "
                "hub adopts them."
            ),
            answered,
        )
