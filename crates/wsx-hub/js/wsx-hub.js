// wsx-hub.js: the browser client of wsx-hub (protocol wsx-hub.v1, see
// ../PROTOCOL.md). One ES module, no build step, no dependencies.
//
//   import { HubClient } from "./wsx-hub.js";
//   const hub = new HubClient("wss://chat.example/ws?token=...");
//   hub.on("chat", (data, info) => console.log(info.from, data));        // events
//   hub.on("confirm", async (data) => "yes");                            // server requests: the return value is the ack
//   hub.onPresence((p) => console.log(p.room, p.count, p.joins, p.leaves)); // coalesced changes
//   const { count, members } = await hub.join("lobby");                  // ack as a promise
//   hub.publish("lobby", "chat", { text: "hi" });                        // to the room, all but us
//   const sum = await hub.request("add", [2, 3]);                        // rejects on error or timeout
//   hub.publish("lobby", "file", { name: "a.png" }, { attachments: [bytes] });
//   hub.close();
//
// Reconnects with exponential backoff and jitter, keeps what is sent while
// offline (up to `offlineQueue` messages) and sends it on reconnect, and
// joins its rooms again after each reconnect.

export const SUBPROTOCOL = "wsx-hub.v1";
const MAX_ID = 2 ** 53 - 1;

/** An error answered by the peer (`code`, `message`), or a local one. */
export class HubError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "HubError";
    this.code = code;
  }
}

// ---------------------------------------------------------------- codec

const utf8 = new TextEncoder();
const utf8d = new TextDecoder("utf-8", { fatal: true });

/** Encode a packet: a string, or an ArrayBuffer envelope with attachments. */
export function encode(packet, attachments = []) {
  if (!attachments.length) return JSON.stringify(packet);
  const header = utf8.encode(JSON.stringify({ ...packet, attachments: attachments.length }));
  const parts = attachments.map((a) => (a instanceof Uint8Array ? a : new Uint8Array(a.buffer ?? a)));
  let size = 4 + header.length;
  for (const p of parts) size += 4 + p.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, header.length);
  out.set(header, 4);
  let at = 4 + header.length;
  for (const p of parts) {
    view.setUint32(at, p.length);
    out.set(p, at + 4);
    at += 4 + p.length;
  }
  return out.buffer;
}

/** Decode a message (string or ArrayBuffer); throws HubError("bad_frame") when invalid. */
export function decode(data) {
  const bad = (why) => new HubError("bad_frame", why);
  let packet;
  let attachments = [];
  if (typeof data === "string") {
    try { packet = JSON.parse(data); } catch { throw bad("invalid JSON"); }
    if (packet && packet.attachments) throw bad("a text frame cannot carry attachments");
  } else {
    const bytes = new Uint8Array(data);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.length < 4) throw bad("envelope too short");
    const h = view.getUint32(0);
    if (4 + h > bytes.length) throw bad("header cut short");
    try { packet = JSON.parse(utf8d.decode(bytes.subarray(4, 4 + h))); } catch { throw bad("invalid header"); }
    const n = packet && packet.attachments;
    if (!Number.isInteger(n) || n < 1 || n > 64) throw bad("bad attachment count");
    let at = 4 + h;
    for (let i = 0; i < n; i++) {
      if (at + 4 > bytes.length) throw bad("attachment length cut short");
      const len = view.getUint32(at);
      if (at + 4 + len > bytes.length) throw bad("attachment cut short");
      attachments.push(bytes.slice(at + 4, at + 4 + len));
      at += 4 + len;
    }
    if (at !== bytes.length) throw bad("bytes after the last attachment");
  }
  if (!packet || typeof packet !== "object" || typeof packet.t !== "string") throw bad("not a packet");
  delete packet.attachments;
  return { packet, attachments };
}

// ---------------------------------------------------------------- client

export class HubClient {
  /**
   * @param {string} url ws:// or wss:// URL (a token can go in the query string)
   * @param {object} [options]
   * @param {number} [options.minDelay=100] first reconnect delay (ms)
   * @param {number} [options.maxDelay=10000] largest reconnect delay (ms)
   * @param {number} [options.ackTimeout=10000] time to wait for acks (ms)
   * @param {number} [options.offlineQueue=1024] messages kept while offline
   * @param {Function} [options.WebSocket] a WebSocket class (default: globalThis.WebSocket)
   */
  constructor(url, options = {}) {
    this.url = url;
    this.opts = { minDelay: 100, maxDelay: 10000, ackTimeout: 10000, offlineQueue: 1024, ...options };
    this.WS = this.opts.WebSocket ?? globalThis.WebSocket;
    this.conn = null; // connection id while connected
    this.meta = null;
    this.rooms = new Set();
    this.handlers = new Map();
    this.listeners = { connect: [], disconnect: [], presence: [], error: [] };
    this.pending = new Map(); // id -> {resolve, reject, timer}
    this.offline = []; // [{packet, attachments, id?}]
    this.nextId = 1;
    this.attempt = 0;
    this.closed = false;
    this.ws = null;
    this.#open();
  }

  /** Handle event `name`: `fn(data, {room, from, attachments})`; for requests its (awaited) return value is the ack, a throw the error. */
  on(name, fn) { this.handlers.set(name, fn); return this; }
  /** `fn({conn, meta})` after each (re)connect. */
  onConnect(fn) { this.listeners.connect.push(fn); return this; }
  /** `fn({code, reason})` when the connection is lost (it reconnects). */
  onDisconnect(fn) { this.listeners.disconnect.push(fn); return this; }
  /** `fn({room, count, joins, leaves})` when members join or leave one of our rooms: the changes since the server's previous packet for the room (at most every 100 ms by default); `joins` and `leaves` are absent where the room sends counts only. */
  onPresence(fn) { this.listeners.presence.push(fn); return this; }
  /** `fn(HubError)` for refusals of what we sent without a request. */
  onError(fn) { this.listeners.error.push(fn); return this; }

  get connected() { return this.conn !== null; }

  /** Send an event to the server's handler. */
  emit(event, data = null, { attachments = [] } = {}) {
    this.#send({ t: "event", event, data }, attachments);
  }

  /** Send an event to the server's handler; resolves with its answer. */
  request(event, data = null, { attachments = [], timeout } = {}) {
    return this.#request({ t: "event", event, data }, attachments, timeout);
  }

  /** Send an event to the other members of a room (`echo`: to us too). With `ack: true`, resolves once accepted. */
  publish(room, event, data = null, { attachments = [], echo = false, ack = false } = {}) {
    const p = { t: "publish", room, event, data };
    if (echo) p.echo = true;
    if (ack) return this.#request(p, attachments);
    this.#send(p, attachments);
    return Promise.resolve();
  }

  /** Join a room (again after each reconnect); resolves with `{room, count, members}` (`members` only in small rooms that show names). */
  async join(room) {
    this.rooms.add(room);
    return await this.#request({ t: "join", room });
  }

  /** A page of a joined room's members: resolves with `{count, members, next}`; pass `next` as `after` for the next page. */
  members(room, { after, limit } = {}) {
    const p = { t: "members", room };
    if (after !== undefined) p.after = after;
    if (limit !== undefined) p.limit = limit;
    return this.#request(p);
  }

  /** Leave a room. */
  async leave(room) {
    this.rooms.delete(room);
    await this.#request({ t: "leave", room });
  }

  /** Close (1000) and stop reconnecting. */
  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    for (const item of this.offline) item.reject?.(new HubError("closed", "the client is closed"));
    this.offline = [];
    this.#failPending("closed");
    if (this.ws) this.ws.close(1000);
  }

  // -------------------------------------------------------------- internals

  #open() {
    if (this.closed) return;
    let ws;
    try {
      ws = new this.WS(this.url, [SUBPROTOCOL]);
    } catch (e) {
      this.#retry(1006, String(e));
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onmessage = (e) => this.#incoming(e.data);
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      const was = this.conn !== null;
      this.conn = null;
      this.ws = null;
      this.#failPending("disconnected");
      if (was) this.#fire("disconnect", { code: e.code, reason: e.reason });
      this.#retry(e.code, e.reason);
    };
  }

  #retry() {
    if (this.closed) return;
    const base = Math.min(this.opts.maxDelay, this.opts.minDelay * 2 ** Math.min(this.attempt, 20));
    const delay = base / 2 + Math.random() * (base / 2); // jitter
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.#open(), delay);
  }

  #fire(kind, arg) {
    for (const fn of this.listeners[kind]) {
      try { fn(arg); } catch (e) { console.error(e); }
    }
  }

  #failPending(code) {
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new HubError(code, "the connection closed before the answer"));
    }
    this.pending.clear();
  }

  #send(packet, attachments = [], item = {}) {
    if (this.closed) throw new HubError("closed", "the client is closed");
    if (this.conn !== null && this.ws) {
      this.ws.send(encode(packet, attachments));
      return;
    }
    this.offline.push({ packet, attachments, ...item });
    while (this.offline.length > this.opts.offlineQueue) {
      this.offline.shift().reject?.(new HubError("dropped", "dropped from the offline queue"));
    }
  }

  #request(packet, attachments = [], timeout = this.opts.ackTimeout) {
    return new Promise((resolve, reject) => {
      const item = { resolve, reject, timeout, packet };
      const timer = setTimeout(() => {
        item.gaveUp = true;
        if (item.id !== undefined) this.pending.delete(item.id);
        reject(new HubError("timeout", `no answer within ${timeout} ms`));
      }, timeout);
      item.timer = timer;
      if (this.conn !== null) this.#sendRequest(item, attachments);
      else this.#send(packet, attachments, item);
    });
  }

  #sendRequest(item, attachments) {
    if (item.gaveUp) return;
    const id = this.nextId;
    this.nextId = this.nextId >= MAX_ID ? 1 : this.nextId + 1;
    item.id = id;
    this.pending.set(id, item);
    this.ws.send(encode({ ...item.packet, id }, attachments));
  }

  #onWelcome(p) {
    this.conn = p.conn;
    this.meta = p.meta ?? null;
    this.attempt = 0;
    for (const room of this.rooms) this.ws.send(encode({ t: "join", room }));
    const queued = this.offline;
    this.offline = [];
    for (const item of queued) {
      if (item.resolve) this.#sendRequest(item, item.attachments);
      else this.ws.send(encode(item.packet, item.attachments));
    }
    this.#fire("connect", { conn: this.conn, meta: this.meta });
  }

  #incoming(data) {
    let packet, attachments;
    try {
      ({ packet, attachments } = decode(data));
    } catch (e) {
      console.warn("wsx-hub: invalid packet from the server", e);
      return;
    }
    switch (packet.t) {
      case "welcome": return this.#onWelcome(packet);
      case "ack": {
        const p = this.pending.get(packet.id);
        if (!p) return;
        this.pending.delete(packet.id);
        clearTimeout(p.timer);
        if (packet.error) p.reject(new HubError(packet.error.code, packet.error.message));
        else p.resolve(packet.data ?? null);
        return;
      }
      case "event": return this.#onEvent(packet, attachments);
      case "presence": return this.#fire("presence", { room: packet.room, count: packet.count, joins: packet.joins, leaves: packet.leaves });
      case "error": {
        const p = packet.id !== undefined && this.pending.get(packet.id);
        const err = new HubError(packet.error?.code ?? "error", packet.error?.message ?? "");
        if (p) {
          this.pending.delete(packet.id);
          clearTimeout(p.timer);
          p.reject(err);
        } else this.#fire("error", err);
        return;
      }
      default: return; // newer packet types are ignored
    }
  }

  async #onEvent(p, attachments) {
    const fn = this.handlers.get(p.event);
    const ws = this.ws;
    const answer = (body) => {
      if (p.id !== undefined && ws && ws === this.ws) ws.send(encode({ t: "ack", id: p.id, ...body }));
    };
    if (!fn) {
      answer({ error: { code: "unknown_event", message: `no handler for ${p.event}` } });
      return;
    }
    try {
      const result = await fn(p.data ?? null, { room: p.room, from: p.from, attachments });
      answer({ data: result === undefined ? null : result });
    } catch (e) {
      answer({ error: { code: e?.code ?? "handler_error", message: String(e?.message ?? e) } });
    }
  }
}
