// The wsx-hub chat demo, with no server code:
//
//   wsx serve --hub --static examples/chat      # then open http://127.0.0.1:9001/ in two tabs
//
// Clients publish to the room "lobby"; the hub relays to its members and
// tells them who joins and leaves (presence, by connection id). Names travel
// in the messages: a client that (re)joins says "hello" with its name, and
// the others answer "here" with theirs. /wsx-hub.js is the browser client
// that `wsx serve --hub` serves.
import { HubClient } from "/wsx-hub.js";

const ROOM = "lobby";
const $ = (id) => document.getElementById(id);
const text = (v, max) => (typeof v === "string" ? v.slice(0, max) : "");

const names = new Map(); // connection id -> name
const here = new Set(); // connection ids in the room

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("name").value.trim().slice(0, 32);
  if (name) start(name);
});

function start(me) {
  $("join").hidden = true;
  $("chat").hidden = false;
  setStatus("connecting");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const hub = new HubClient(`${scheme}://${location.host}/`, { maxDelay: 2000 });

  hub.onConnect(async ({ conn }) => {
    setStatus("connected");
    names.set(conn, me);
    try {
      // The client rejoins by itself after a reconnect; joining again here
      // answers who is in the room now.
      const { members = [] } = await hub.join(ROOM);
      for (const m of members) here.add(m.conn);
      hub.publish(ROOM, "hello", { name: me });
    } catch (err) {
      console.warn("join failed (retried on the next connect):", err);
    }
    renderMembers();
  });
  hub.onDisconnect(() => {
    setStatus("reconnecting");
    here.clear(); // connection ids change with the connection
    names.clear();
    renderMembers();
  });
  // Joins and leaves, a packet per room at most every 100 ms (names up to
  // the server's limit for them: a chat room is small).
  hub.onPresence(({ room, joins = [], leaves = [] }) => {
    if (room !== ROOM) return;
    for (const m of leaves) {
      here.delete(m.conn);
      names.delete(m.conn);
    }
    for (const m of joins) here.add(m.conn);
    renderMembers();
  });
  hub.on("hello", (data, { from }) => {
    learn(from, data);
    hub.publish(ROOM, "here", { name: me });
  });
  hub.on("here", (data, { from }) => learn(from, data));
  hub.on("chat", (data, { from }) => {
    learn(from, data);
    addMessage(text(data?.name, 32), text(data?.text, 500), from === hub.conn);
  });

  $("send").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("text");
    const body = input.value.trim();
    if (!body) return;
    // echo: our own message comes back once the hub relayed it (queued while offline).
    hub.publish(ROOM, "chat", { name: me, text: body }, { echo: true });
    input.value = "";
  });
  $("text").focus();
}

function learn(conn, data) {
  const name = text(data?.name, 32);
  if (!conn || !name) return;
  names.set(conn, name);
  here.add(conn);
  renderMembers();
}

function setStatus(state) {
  const labels = { connecting: "connecting…", connected: "connected", reconnecting: "reconnecting…" };
  const el = $("status");
  el.dataset.state = state;
  el.textContent = labels[state];
}

function renderMembers() {
  const list = [...here].map((conn) => names.get(conn) ?? `(${conn})`).sort();
  $("members").replaceChildren(...list.map((name) => li(name)));
}

function addMessage(name, body, mine) {
  const box = $("messages");
  const item = li();
  if (mine) item.className = "mine";
  const who = document.createElement("span");
  who.className = "name";
  who.textContent = name || "?";
  const what = document.createElement("span");
  what.className = "text";
  what.textContent = body;
  item.append(who, what);
  box.append(item);
  box.scrollTop = box.scrollHeight;
}

function li(content = "") {
  const el = document.createElement("li");
  el.textContent = content;
  return el;
}
