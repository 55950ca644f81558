// Smoke test of wsx-hub.js under Node, with the `ws` package as WebSocket.
// Run by crates/wsx-hub/tests/js.rs: node smoke.mjs URL (WS_MODULE_DIR
// names a node_modules directory holding `ws`).
import { createRequire } from "node:module";
import { HubClient, encode, decode } from "../wsx-hub.js";

const require = createRequire(process.env.WS_MODULE_DIR + "/");
const WebSocket = require("ws");
const url = process.argv[2];
const fail = (msg) => { console.error("FAIL", msg); process.exit(1); };
const timer = setTimeout(() => fail("timed out"), 5000);

// Codec round trip with attachments.
const env = encode({ t: "event", event: "f", data: 1 }, [new Uint8Array([1, 2]), new Uint8Array([])]);
const back = decode(env);
if (back.packet.event !== "f" || back.attachments.length !== 2 || back.attachments[0][1] !== 2) fail("codec");

const hub = new HubClient(url, { WebSocket });
hub.on("confirm", async (data) => ({ yes: data.n + 1 }));
const connected = new Promise((resolve) => hub.onConnect(resolve));
const echoed = new Promise((resolve) => hub.on("file", (data, info) => resolve({ data, info })));
const queuedSum = hub.request("add", [20, 22]); // sent before the welcome: queued
const { conn } = await connected;
if (!conn) fail("no connection id");
if ((await queuedSum) !== 42) fail("add");
const presence = new Promise((resolve) => hub.onPresence(resolve));
const joined = await hub.join("room");
if (joined.count !== 1 || joined.members.length !== 1 || joined.members[0].conn !== conn) fail("join " + JSON.stringify(joined));
const p = await presence; // our own join
if (p.room !== "room" || p.count !== 1 || p.joins[0].conn !== conn || p.leaves.length !== 0) fail("presence " + JSON.stringify(p));
const page = await hub.members("room", { limit: 1 });
if (page.count !== 1 || page.members[0].conn !== conn || page.next !== undefined) fail("members " + JSON.stringify(page));
await hub.publish("room", "file", { name: "a" }, { attachments: [new Uint8Array([7, 8, 9])], echo: true, ack: true });
const { data, info } = await echoed;
if (data.name !== "a" || info.from !== conn || info.attachments[0][2] !== 9) fail("echo");
try {
  await hub.request("missing", null);
  fail("missing handler answered");
} catch (e) {
  if (e.code !== "unknown_event") fail("error code " + e.code);
}
// Ask the Rust side to send us a request; our handler answers it.
const answer = await hub.request("ask-me", null);
if (answer.yes !== 2) fail("server request: " + JSON.stringify(answer));
clearTimeout(timer);
hub.close();
console.log("ok");
