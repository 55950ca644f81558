// examples/chat on the official Socket.IO client, with no server code:
//
//   examples/socketio-chat/fetch-client      # socket.io.min.js next to this page
//   wsx serve --socketio --static examples/socketio-chat
//   # then open http://127.0.0.1:9001/ in two tabs
//
// `wsx serve --socketio` is a relay (crates/wsx-hub/src/socketio/relay.rs):
// join(room, ack), leave(room, ack), publish(room, event, ...args, ack) to
// everyone in the room but the sender, whoami(ack). It has no presence, so
// the pages keep the member list themselves: a page that (re)joins says
// "hello" with its name, the others answer "here"; a page says "bye" when it
// goes, and "here" every HEARTBEAT_MS, so that one that went without a word
// drops out after EXPIRE_MS. It has no connection state recovery either: after
// a reconnect the socket is a new one in no room, and the "connect" handler
// joins again. Nor history: a message goes to whoever is in the room when it
// is published, so one written while offline, or while alone in the room,
// waits (dimmed) until this page is in the room with someone else.
//
// The relay does not tell who sent an event, so the senders say it: every
// payload carries `from`, a random id of this page (which, unlike socket.id,
// stays the same across reconnects).

const ROOM = "lobby";
const HEARTBEAT_MS = 15000;
const EXPIRE_MS = 40000;
const ACK_MS = 10000;
const $ = (id) => document.getElementById(id);
const text = (v, max) => (typeof v === "string" ? v.slice(0, max) : "");

const self = [...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, "0")).join("");
const members = new Map(); // page id -> { name, seen (ms) }

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("name").value.trim().slice(0, 32);
  if (name) start(name);
});

function start(me) {
  $("join").hidden = true;
  $("chat").hidden = false;
  if (typeof io !== "function") {
    const el = $("status");
    el.dataset.state = "offline";
    el.textContent = "socket.io.min.js is missing: run examples/socketio-chat/fetch-client";
    return;
  }
  setStatus("connecting");
  // Same origin: the page and /socket.io/ are both `wsx serve`'s. Polling
  // first, then the upgrade to WebSocket (the client's default); back off up
  // to 2 s between reconnection attempts, for ever.
  const socket = io({ reconnectionDelay: 500, reconnectionDelayMax: 2000 });
  // Messages written while out of the room or alone in it: the relay keeps
  // no history, so they wait (dimmed) for the rejoin and someone to read them.
  const outbox = [];
  let inRoom = false;
  const flush = () => {
    if (inRoom && members.size > 1) for (const { item, body } of outbox.splice(0)) send(item, body);
  };
  const say = (event, data = {}) => socket.emit("publish", ROOM, event, { from: self, name: me, ...data });

  socket.on("connect", async () => {
    setStatus("connected");
    members.set(self, { name: me, seen: Date.now() });
    renderMembers();
    try {
      // A new socket (no recovery): join again, then say who we are.
      const joined = await socket.timeout(ACK_MS).emitWithAck("join", ROOM);
      if (joined !== true) throw new Error(joined?.error ?? String(joined));
      inRoom = true;
      say("hello");
    } catch (err) {
      // Lost with the connection, or refused: the next connect tries again.
      console.warn(`join ${ROOM} failed:`, err);
    }
  });
  socket.on("disconnect", (reason) => {
    setStatus("reconnecting");
    inRoom = false;
    members.clear(); // we hear everyone again after the rejoin
    renderMembers();
    // The client reconnects by itself unless the server (or we) ended the
    // socket; the relay never does, but come back anyway.
    if (reason === "io server disconnect") setTimeout(() => socket.connect(), 1000);
  });

  socket.on("hello", (data) => {
    if (learn(data)) say("here");
    flush();
  });
  socket.on("here", (data) => learn(data) && flush());
  socket.on("bye", (data) => {
    if (members.delete(data?.from)) renderMembers();
  });
  socket.on("chat", (data) => {
    if (learn(data)) addMessage(text(data.name, 32), text(data?.text, 500), false);
    flush();
  });

  // Sends a message of ours, shown dimmed until the relay acks it.
  function send(item, body) {
    socket.timeout(ACK_MS).emit("publish", ROOM, "chat", { from: self, name: me, text: body }, (err, ok) => {
      item.classList.remove("pending");
      if (err || ok !== true) {
        item.classList.add("failed");
        console.warn("message not confirmed:", err ?? ok);
      }
    });
  }

  $("send").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("text");
    const body = input.value.trim().slice(0, 500);
    if (!body) return;
    const item = addMessage(me, body, true);
    item.classList.add("pending");
    outbox.push({ item, body });
    flush();
    input.value = "";
  });

  setInterval(() => {
    if (!inRoom) return;
    say("here");
    const now = Date.now();
    let gone = false;
    for (const [id, m] of members) if (id !== self && now - m.seen > EXPIRE_MS) gone = members.delete(id);
    if (gone) renderMembers();
  }, HEARTBEAT_MS);
  addEventListener("pagehide", () => inRoom && say("bye"));
  $("text").focus();
}

// Someone's name from what they sent; false for anything malformed or our own.
function learn(data) {
  const id = text(data?.from, 64);
  const name = text(data?.name, 32);
  if (!id || !name || id === self) return false;
  members.set(id, { name, seen: Date.now() });
  renderMembers();
  return true;
}

function setStatus(state) {
  const labels = { connecting: "connecting…", connected: "connected", reconnecting: "reconnecting…" };
  const el = $("status");
  el.dataset.state = state;
  el.textContent = labels[state];
}

function renderMembers() {
  const list = [...members.values()].map((m) => m.name).sort();
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
  return item;
}

function li(content = "") {
  const el = document.createElement("li");
  el.textContent = content;
  return el;
}
