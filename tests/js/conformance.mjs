// The real Rails client (@rails/actioncable) as a browser against `botster relay`.
//
//   node conformance.mjs <ws url> <identifier params as JSON>
//
// Prints one JSON line per event on stdout: {"event":"connected"}, {"event":"received",
// "data":...}, {"event":"rejected"}, {"event":"disconnected"}, {"event":"ws_error",
// "message":...}, {"event":"welcome"} (socket opened and welcomed). Reads JSON lines on stdin:
// {"perform": action, "data": {...}} calls subscription.perform(action, data);
// {"quit": true} disconnects and exits.
import { createInterface } from "node:readline";
import WebSocket from "ws";
import * as ActionCable from "@rails/actioncable";

// node 20 has no window: the connection monitor listens for visibilitychange on the global.
globalThis.addEventListener ??= () => {};
globalThis.removeEventListener ??= () => {};

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

// The ws error a client sees when the server picks no subprotocol is the negative case.
class ReportingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.on("error", (e) => emit({ event: "ws_error", message: String(e && e.message) }));
    this.on("message", (m) => {
      if (String(m).includes('"welcome"')) emit({ event: "welcome" });
    });
  }
}
ActionCable.adapters.WebSocket = ReportingWebSocket;
ActionCable.logger.enabled = process.env.CABLE_DEBUG === "1";
ActionCable.adapters.logger = { log: (...a) => process.stderr.write(a.join(" ") + "\n") };

const [url, paramsJson] = process.argv.slice(2);
const consumer = ActionCable.createConsumer(url);
const subscription = consumer.subscriptions.create(JSON.parse(paramsJson), {
  connected() { emit({ event: "connected" }); },
  disconnected() { emit({ event: "disconnected" }); },
  rejected() { emit({ event: "rejected" }); },
  received(data) { emit({ event: "received", data }); },
});

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.perform) {
    subscription.perform(cmd.perform, cmd.data || {});
    emit({ event: "performed", action: cmd.perform });
  } else if (cmd.quit) {
    consumer.disconnect();
    rl.close();
    process.exit(0);
  }
});
