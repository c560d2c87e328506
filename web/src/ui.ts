/**
 * The hub page: agent list, the selected agent's live terminal (xterm.js, DOM renderer so its
 * rows are DOM text), create/close dialogs with the terminal UI's commands and warnings, the hub
 * panel (plugins and their errors, MCP tools), three status badges and, on phones, a key bar.
 * It talks to the hub only through HubClient; the carrier underneath is swappable.
 */
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import { TermFeed } from "./termfeed";
import type { Status } from "./carrier";
import type { HubClient } from "./client";
import { applyModifiers, type Modifiers } from "./keys";
import { b64decode } from "./olm";

export interface Agent {
  agent_key: string;
  agent?: string;
  branch?: string;
  worktree?: string;
  status?: string;
  exit_code?: number | null;
  title?: string | null;
  attention?: boolean | string | null;
  session_id?: string | null;
  error?: string | null;
}

const te = new TextEncoder();

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | ((e: Event) => void)> = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false) el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
}

/** Attention first, then running before the rest, then by key. */
export function sortAgents(agents: Agent[]): Agent[] {
  const rank = (a: Agent) => (a.attention ? 0 : a.status === "running" ? 1 : 2);
  return [...agents].sort((a, b) => rank(a) - rank(b) || a.agent_key.localeCompare(b.agent_key));
}

const BADGE_TEXT: Record<string, Record<string, string>> = {
  relay: { connecting: "relay: connecting", connected: "relay: connected", disconnected: "relay: offline" },
  hub: { unknown: "hub: …", online: "hub: online", offline: "hub: offline" },
  peer: { down: "link: down", connecting: "link: connecting", direct: "link: direct", relayed: "link: relayed (TURN)" },
};
const BADGE_OK: Record<string, string[]> = { relay: ["connected"], hub: ["online"], peer: ["direct", "relayed"] };

export class HubPage {
  private agents: Agent[] = [];
  private selected: string | null = null;
  private term: Terminal;
  /** Every write to the terminal goes through it (bounded backlog, resync when behind). */
  readonly feed: TermFeed;
  private fit = new FitAddon();
  private mods: Modifiers = { ctrl: false, alt: false };
  private listEl = h("ul", { class: "agents", "data-testid": "agent-list" });
  private termEl = h("div", { class: "terminal", "data-testid": "terminal" });
  private termTitle = h("span", { class: "term-title" }, "No agent selected");
  private termInfo = h("span", { class: "term-info" });
  private badges: Record<string, HTMLElement> = {};
  private banner = h("div", { class: "banner", hidden: true, "data-testid": "banner" });
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private panelOpen = false;
  private panelBody = h("div", { class: "panel-body" });
  private keyButtons: Record<string, HTMLButtonElement> = {};
  private wantAgent: string | null = new URLSearchParams(location.search).get("agent");

  constructor(
    private readonly root: HTMLElement,
    private readonly client: HubClient,
    private readonly hubId: string,
  ) {
    this.term = new Terminal({
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
      fontSize: window.innerWidth < 700 ? 12 : 14,
      scrollback: 5000,
      cursorBlink: false,
      allowProposedApi: true,
      theme: { background: "#0f1115" },
    });
    this.term.loadAddon(this.fit);
    this.feed = new TermFeed({ write: (d, parsed) => this.term.write(d, parsed) }, { resync: () => this.client.resync() });
    this.render();
    this.term.open(this.termEl);
    this.term.onData((d) => this.typed(d));
    this.term.onBinary((d) => this.client.input(Uint8Array.from(d, (c) => c.charCodeAt(0) & 0xff)));
    this.term.onResize(({ rows, cols }) => this.client.resize(rows, cols));
    const refit = debounce(() => this.fitTerminal(), 40);
    window.addEventListener("resize", refit);
    new ResizeObserver(refit).observe(this.termEl);
    window.visualViewport?.addEventListener("resize", refit);
  }

  // ---------- layout ----------

  private render() {
    for (const k of ["relay", "hub", "peer"]) {
      this.badges[k] = h("span", { class: "badge", "data-testid": `badge-${k}` });
    }
    const header = h(
      "header",
      {},
      h("button", { class: "back", title: "Agents", "aria-label": "Back to agents", onclick: () => this.showList() }, "‹"),
      h("strong", { class: "brand" }, "Botster"),
      h("span", { class: "hubid", title: this.hubId }, this.hubId.slice(0, 12)),
      h("span", { class: "badges" }, this.badges.relay, this.badges.hub, this.badges.peer),
      h("span", { class: "spacer" }),
      h("button", { "data-testid": "new-agent", onclick: () => void this.openCreate() }, "New agent"),
      h("button", { "data-testid": "hub-panel", onclick: () => void this.openPanel() }, "Hub"),
    );
    const keybar = h("div", { class: "keybar", "data-testid": "keybar" });
    const keys: [string, string][] = [
      ["Esc", "esc"], ["Tab", "tab"], ["Ctrl", "ctrl"], ["Alt", "alt"],
      ["←", "left"], ["↑", "up"], ["↓", "down"], ["→", "right"], ["^C", "ctrl-c"],
    ];
    for (const [label, key] of keys) {
      const b = h("button", { "data-key": key, tabindex: "-1" }, label);
      // pointerdown + preventDefault keeps the terminal focused (the phone keyboard stays up).
      b.addEventListener("pointerdown", (e) => {
        e.preventDefault();
        this.keyBar(key);
      });
      keybar.append(b);
      this.keyButtons[key] = b;
    }
    const termPane = h(
      "section",
      { class: "term-pane" },
      h(
        "div",
        { class: "term-head" },
        this.termTitle,
        this.termInfo,
        h("span", { class: "spacer" }),
        h("button", { "data-testid": "close-agent", onclick: () => void this.openClose() }, "Close agent"),
      ),
      this.termEl,
      keybar,
    );
    this.root.replaceChildren(
      h("div", { class: "hub-page" }, header, this.banner, h("main", {}, h("aside", {}, this.listEl), termPane)),
    );
    this.setStatus({ relay: "connecting", hub: "unknown", peer: "down" });
    this.renderList();
  }

  private showList() {
    document.body.classList.remove("show-term");
  }

  fitTerminal() {
    if (!this.termEl.isConnected || this.termEl.clientWidth === 0) return;
    try {
      this.fit.fit();
    } catch {
      /* not laid out yet */
    }
  }

  setStatus(s: Status) {
    for (const k of ["relay", "hub", "peer"] as const) {
      const v = s[k];
      const b = this.badges[k];
      const text = BADGE_TEXT[k][v] ?? `${k}: ${v}`;
      const [name, state] = text.split(": ");
      b.replaceChildren(h("span", { class: "k" }, name), h("span", { class: "v" }, `: ${state}`));
      b.title = text;
      b.dataset.state = v;
      b.classList.toggle("ok", BADGE_OK[k].includes(v));
    }
  }

  /** The page no longer drives the hub (another tab took it): its banner stays. */
  private handedOver = false;

  handOver(text: string, action: { label: string; onClick: () => void }) {
    this.showBanner(text, "info", action);
    this.handedOver = true;
  }

  showBanner(text: string, kind: "error" | "info" = "error", action?: { label: string; onClick: () => void }) {
    // Requests still in flight when the link stopped fail after the hand-over: their errors
    // must not replace the banner that says why and offers to take the hub back.
    if (this.handedOver) return;
    this.banner.replaceChildren(text);
    if (action) this.banner.append(" ", h("button", { "data-testid": "banner-action", onclick: action.onClick }, action.label));
    this.banner.className = `banner ${kind}`;
    this.banner.hidden = !text;
  }

  // ---------- agents ----------

  /** The link (re)opened: reload the list and let the client re-attach the terminal. */
  async connected() {
    await this.refreshAgents();
    if (this.panelOpen) void this.loadPanel();
  }

  scheduleRefresh() {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      void this.refreshAgents();
    }, 100);
  }

  async refreshAgents() {
    try {
      this.agents = (await this.client.request<Agent[]>("list_agents")) ?? [];
    } catch (e) {
      this.showBanner(`Cannot list agents: ${(e as Error).message}`);
      return;
    }
    // A notification's link (`/hubs/<id>?agent=<key>`) opens that agent's terminal.
    const wanted = this.wantAgent && this.agents.find((a) => a.agent_key === this.wantAgent);
    if (wanted && wanted.session_id) {
      this.wantAgent = null;
      this.select(wanted.agent_key, false);
    }
    if (!this.selected && this.agents.length && window.innerWidth >= 700) {
      const first = sortAgents(this.agents).find((a) => a.session_id);
      if (first) this.select(first.agent_key, false);
    }
    // The selected agent got its session (it was still creating its worktree): attach now.
    const sel = this.agents.find((x) => x.agent_key === this.selected);
    if (sel?.session_id && this.client.attachedSession !== sel.session_id) {
      this.feed.reset();
      this.client.attach(sel.session_id, this.term.rows, this.term.cols);
    }
    this.renderList();
    this.renderTermHead();
  }

  private renderList() {
    const items = sortAgents(this.agents).map((a) => {
      const li = h(
        "li",
        {
          "data-testid": "agent",
          "data-agent-key": a.agent_key,
          class: `agent${a.agent_key === this.selected ? " selected" : ""}${a.attention ? " attention" : ""}`,
          tabindex: "0",
          onclick: () => this.select(a.agent_key, true),
          onkeydown: (e: Event) => {
            if ((e as KeyboardEvent).key === "Enter") this.select(a.agent_key, true);
          },
        },
        h(
          "div",
          { class: "row1" },
          a.attention ? h("span", { class: "dot", title: "needs you" }, "●") : null,
          h("span", { class: "name" }, a.agent_key),
          h("span", { class: `state state-${a.status ?? "unknown"}`, "data-testid": "agent-state" }, stateText(a)),
        ),
        h("div", { class: "row2" }, h("span", { class: "branch" }, a.branch ?? ""), a.agent ? h("span", { class: "def" }, ` · ${a.agent}`) : null),
        a.title ? h("div", { class: "title" }, a.title) : null,
        a.error ? h("div", { class: "error" }, a.error) : null,
      );
      return li;
    });
    if (!items.length) items.push(h("li", { class: "empty" }, "No agents yet. Create one with “New agent”."));
    this.listEl.replaceChildren(...items);
  }

  private renderTermHead() {
    const a = this.agents.find((x) => x.agent_key === this.selected);
    this.termTitle.textContent = a ? a.agent_key : "No agent selected";
    this.termInfo.textContent = a ? ` ${a.branch ?? ""} · ${stateText(a)}${a.title ? ` · ${a.title}` : ""}` : "";
  }

  select(agentKey: string, focus: boolean) {
    const a = this.agents.find((x) => x.agent_key === agentKey);
    if (!a) return;
    this.selected = agentKey;
    document.body.classList.add("show-term");
    this.renderList();
    this.renderTermHead();
    this.fitTerminal();
    this.feed.reset();
    if (a.session_id) this.client.attach(a.session_id, this.term.rows, this.term.cols);
    else this.client.detach();
    if (a.attention) this.client.request("clear_attention", { agent_key: agentKey }).catch(() => {});
    if (focus) this.term.focus();
  }

  // ---------- terminal ----------

  snapshot(data: Uint8Array) {
    this.feed.snapshot(data);
  }

  output(data: Uint8Array) {
    this.feed.output(data);
  }

  exited(code: number) {
    this.feed.text(`\r\n\x1b[2m[process exited with code ${code}]\x1b[0m\r\n`);
    this.scheduleRefresh();
  }

  private typed(d: string) {
    const out = applyModifiers(d, this.mods);
    if (this.mods.ctrl || this.mods.alt) {
      this.mods = { ctrl: false, alt: false };
      this.keyButtons.ctrl?.classList.remove("on");
      this.keyButtons.alt?.classList.remove("on");
    }
    this.client.input(te.encode(out));
  }

  private keyBar(key: string) {
    const appCursor = this.term.modes.applicationCursorKeysMode;
    const arrows: Record<string, string> = { up: "A", down: "B", right: "C", left: "D" };
    if (key === "ctrl" || key === "alt") {
      this.mods[key] = !this.mods[key];
      this.keyButtons[key].classList.toggle("on", this.mods[key]);
    } else if (key === "esc") this.typed("\x1b");
    else if (key === "tab") this.typed("\t");
    else if (key === "ctrl-c") this.client.input(new Uint8Array([3]));
    else if (arrows[key]) this.typed((appCursor ? "\x1bO" : "\x1b[") + arrows[key]);
    this.term.focus();
  }

  // ---------- dialogs ----------

  private dialog(title: string, ...body: (Node | string)[]): HTMLDialogElement {
    const d = h("dialog", { class: "dialog" }, h("h2", {}, title), ...body);
    d.addEventListener("close", () => d.remove());
    document.body.append(d);
    d.showModal();
    return d;
  }

  async openCreate() {
    const def = h("select", { name: "definition", "data-testid": "create-definition" }, h("option", {}, "loading…"));
    const target = h("input", { name: "target", placeholder: "feature/login or 42", "data-testid": "create-target", autocomplete: "off" });
    const prompt = h("input", { name: "prompt", placeholder: "what the agent should do", "data-testid": "create-prompt" });
    const err = h("p", { class: "error", "data-testid": "dialog-error" });
    const form = h(
      "form",
      { method: "dialog" },
      h("label", {}, "Definition", def),
      h("label", {}, "Branch, or issue number", target),
      h("label", {}, "Prompt (optional)", prompt),
      err,
      h(
        "div",
        { class: "buttons" },
        h("button", { type: "submit", class: "primary", "data-testid": "create-submit" }, "Create"),
        h("button", { type: "button", onclick: () => d.close() }, "Cancel"),
      ),
    );
    const d = this.dialog("Create an agent", form);
    target.focus();
    this.client
      .request<{ name: string }[]>("agent_definitions")
      .then((defs) => {
        def.replaceChildren(...defs.map((x) => h("option", { value: x.name }, x.name)));
        if (!defs.length) err.textContent = "No agent definitions: create .botster/agents/<name>/initialization";
      })
      .catch((e) => (err.textContent = `cannot list agent definitions: ${e.message}`));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const t = target.value.trim();
      if (!t) {
        err.textContent = "Give a branch name or an issue number.";
        return;
      }
      const args: Record<string, unknown> = {};
      if (def.value && def.value !== "loading…") args.agent = def.value;
      if (/^#?\d+$/.test(t)) args.issue = Number(t.replace("#", ""));
      else args.branch = t;
      if (prompt.value) args.prompt = prompt.value;
      try {
        const r = await this.client.request<{ agent_key: string }>("create_agent", args);
        d.close();
        await this.refreshAgents();
        if (r?.agent_key) this.pendingSelect(r.agent_key);
      } catch (e2) {
        err.textContent = (e2 as Error).message;
      }
    });
  }

  /** A new agent has no session until its worktree exists: select it as soon as it has one. */
  private pendingSelect(agentKey: string, tries = 40) {
    const a = this.agents.find((x) => x.agent_key === agentKey);
    if (a?.session_id) return this.select(agentKey, true);
    if (tries > 0) setTimeout(() => void this.refreshAgents().then(() => this.pendingSelect(agentKey, tries - 1)), 250);
  }

  async openClose() {
    const a = this.agents.find((x) => x.agent_key === this.selected);
    if (!a) return;
    const keep = h("input", { type: "radio", name: "mode", value: "keep", checked: true });
    const del = h("input", { type: "radio", name: "mode", value: "delete", "data-testid": "close-delete" });
    const err = h("p", { class: "error", "data-testid": "dialog-error" });
    const form = h(
      "form",
      { method: "dialog" },
      h("p", {}, `Worktree: ${a.worktree || "-"}`),
      h("label", { class: "radio" }, keep, "Keep the worktree"),
      h("label", { class: "radio" }, del, "Delete the worktree and its branch"),
      h("p", { class: "hint" }, "The hub keeps a worktree that holds uncommitted work or commits on no other branch, and says why."),
      err,
      h(
        "div",
        { class: "buttons" },
        h("button", { type: "submit", class: "danger", "data-testid": "close-submit" }, "Close agent"),
        h("button", { type: "button", onclick: () => d.close() }, "Cancel"),
      ),
    );
    const d = this.dialog(`Close agent ${a.agent_key}?`, form);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const r = await this.client.request<{ closed: string; warning?: string }>("close_agent", {
          agent_key: a.agent_key,
          delete_worktree: del.checked,
        });
        d.close();
        if (this.selected === a.agent_key) {
          this.selected = null;
          this.client.detach();
          this.feed.reset();
          this.showList();
        }
        if (r?.warning) this.message(`${r.closed} closed`, r.warning);
        await this.refreshAgents();
      } catch (e2) {
        err.textContent = (e2 as Error).message;
      }
    });
  }

  private message(title: string, text: string) {
    const d = this.dialog(title, h("p", { "data-testid": "message" }, text), h("div", { class: "buttons" }, h("button", { onclick: () => d.close() }, "OK")));
  }

  async openPanel() {
    this.panelOpen = true;
    const d = this.dialog(
      "Hub",
      this.panelBody,
      h("div", { class: "buttons" }, h("button", { onclick: () => void this.loadPanel() }, "Refresh"), h("button", { onclick: () => d.close() }, "Close")),
    );
    d.classList.add("wide");
    d.dataset.testid = "hub-panel-dialog";
    d.addEventListener("close", () => (this.panelOpen = false));
    await this.loadPanel();
  }

  async loadPanel() {
    try {
      const [info, plugins, tools] = await Promise.all([
        this.client.request<Record<string, unknown>>("hub.info"),
        this.client.request<Record<string, unknown>[]>("plugins.list"),
        this.client.request<Record<string, unknown>[]>("mcp.list_tools"),
      ]);
      const table = (head: string[], rows: (string | Node)[][]) =>
        h("table", {}, h("thead", {}, h("tr", {}, ...head.map((x) => h("th", {}, x)))), h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c))))));
      this.panelBody.replaceChildren(
        h("p", {}, `Hub ${info.hub_id ?? ""} · ${info.plugins ?? 0} plugins · ${info.tools ?? 0} MCP tools`),
        h("h3", {}, "Plugins"),
        table(
          ["plugin", "status", "layer", "error"],
          plugins.map((p) => [String(p.name ?? ""), String(p.status ?? ""), String(p.source ?? ""), p.error ? h("span", { class: "error" }, String(p.error)) : ""]),
        ),
        h("h3", {}, "Notifications"),
        this.pushRow(),
        h("h3", {}, "MCP tools"),
        table(["tool", "source", "description"], tools.map((t) => [String(t.name ?? ""), String(t.source ?? ""), String(t.description ?? "")])),
      );
    } catch (e) {
      this.panelBody.replaceChildren(h("p", { class: "error" }, `hub unreachable: ${(e as Error).message}`));
    }
  }

  /**
   * Web push: a switch per hub. On: the browser's permission prompt, a subscription with the
   * hub's VAPID key, handed to the hub (`push.subscribe`); the service worker shows what the hub
   * pushes. Off: the hub forgets this device (`push.unsubscribe`). The browser has one
   * subscription for every hub it is paired with, so which hubs hold it is kept here.
   */
  private pushRow(): HTMLElement {
    const status = h("span", { class: "hint", "data-testid": "push-status" });
    const supported = "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
    const toggle = h("input", { type: "checkbox", role: "switch", "data-testid": "push-switch", disabled: true });
    const label = h("label", {}, toggle, " Notifications on this device");
    const stored = `botster-push:${this.hubId}`;
    const current = async () => (await navigator.serviceWorker.ready).pushManager.getSubscription();
    const say = (text: string) => (status.textContent = text ? ` ${text}` : "");
    if (!supported) {
      say("This browser cannot receive push notifications here (they need https).");
      return h("p", {}, label, status);
    }
    void current()
      .then((sub) => {
        toggle.checked = !!sub && localStorage.getItem(stored) === sub.endpoint;
        toggle.disabled = false;
      })
      .catch((e) => say(`Push is unavailable: ${(e as Error).message}`));
    const turnOn = async () => {
      if ((await Notification.requestPermission()) !== "granted") throw new Error("notifications are blocked for this site");
      const reg = await navigator.serviceWorker.ready;
      const { public_key } = await this.client.request<{ public_key: string }>("push.vapid_public_key");
      const sub = await reg.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: b64decode(public_key) as Uint8Array<ArrayBuffer>,
      });
      const j = sub.toJSON();
      await this.client.request("push.subscribe", { subscription: { endpoint: j.endpoint, keys: j.keys } });
      localStorage.setItem(stored, sub.endpoint);
    };
    const turnOff = async () => {
      const endpoint = localStorage.getItem(stored) ?? (await current())?.endpoint;
      if (endpoint) await this.client.request("push.unsubscribe", { endpoint });
      localStorage.removeItem(stored);
    };
    toggle.addEventListener("change", async () => {
      const on = toggle.checked;
      toggle.disabled = true;
      say("");
      try {
        await (on ? turnOn() : turnOff());
        say(on ? "On: this device gets a notification when an agent needs you." : "Off.");
        toggle.dataset.state = on ? "on" : "off";
      } catch (e) {
        toggle.checked = !on;
        say(`Could not turn notifications ${on ? "on" : "off"}: ${(e as Error).message}`);
        toggle.dataset.state = "error";
      } finally {
        toggle.disabled = false;
      }
    });
    return h("p", {}, label, status);
  }

  /** A click on a notification, in a window already showing this hub: show that agent. */
  openAgent(agentKey: string) {
    this.wantAgent = agentKey;
    void this.refreshAgents();
  }

  onEvent(channel: string, event: string) {
    if (channel === "hub" && (event === "agents_changed" || event === "agent_attention")) this.scheduleRefresh();
    if (this.panelOpen && (event === "plugin_reloaded" || event === "tools_list_changed")) void this.loadPanel();
  }
}

function stateText(a: Agent): string {
  const s = a.status ?? "unknown";
  if (s === "exited") return `exited ${a.exit_code ?? "?"}`;
  return s.replace(/_/g, " ");
}

function debounce(fn: () => void, ms: number): () => void {
  let t: ReturnType<typeof setTimeout> | null = null;
  return () => {
    if (t) clearTimeout(t);
    t = setTimeout(fn, ms);
  };
}
