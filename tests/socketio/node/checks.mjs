// The checks of tests/socketio/CONTRACT.md, run by the official Socket.IO
// client against a server: in Node by client.mjs, in headless Chromium by
// browser.mjs (the page, ../browser/index.html, imports this module next to
// socket.io.min.js).
// Nothing here is Node- or browser-specific: the caller passes the client
// library (`io`, `Manager`), how to make binary data (`bin`: a Buffer in
// Node, an ArrayBuffer in the browser) and where to report.
//
// runChecks({ lib, url, second, mode, bin, report, only, concurrency }) runs
// every check (or those in `only`) once for one transport mode (MODES) and
// reports each as
//   { mode, check, ok, ms, detail }
// and resolves to the number of failures.

/** The transport modes: which transports the client may use. */
export const MODES = {
  // Polling first, then the upgrade to WebSocket (the client's default).
  upgrade: { transports: ['polling', 'websocket'], upgrade: true },
  websocket: { transports: ['websocket'] },
  polling: { transports: ['polling'], upgrade: false },
};

/** Upper bound for one check. */
const CHECK_TIMEOUT_MS = 10000;
/** How long to wait for a packet that must not come (duplicates, the sender's own). */
const QUIET_MS = 300;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function isBinary(v) {
  return v instanceof ArrayBuffer || ArrayBuffer.isView(v);
}

function hex(v) {
  const u8 = v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  let s = '';
  for (const b of u8) s += b.toString(16).padStart(2, '0');
  return s;
}

/** A copy of binary data's bytes. */
function bytesOf(v) {
  return v instanceof ArrayBuffer ? new Uint8Array(v.slice(0)) : Uint8Array.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
}

/** A JSON-comparable form of a value: binary as { bin: hex }, keys sorted. */
function norm(v) {
  if (isBinary(v)) return { bin: hex(v) };
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v).sort()) o[k] = norm(v[k]);
    return o;
  }
  return v;
}

const show = (v) => {
  const s = String(JSON.stringify(norm(v)));
  return s.length > 300 ? `${s.slice(0, 300)}... (${s.length} chars)` : s;
};

function same(got, want, what) {
  const g = JSON.stringify(norm(got));
  const w = JSON.stringify(norm(want));
  if (g !== w) throw new Error(`${what}: got ${show(got)}, expected ${show(want)}`);
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

/** Resolves when `pred()` holds (polled), or rejects after `ms`. */
async function until(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Bytes 0..n-1 (mod 251, so that no run of the pattern aligns with 256). */
function pattern(n, seed = 0) {
  const u8 = new Uint8Array(n);
  for (let i = 0; i < n; i++) u8[i] = (i * 7 + seed) % 251;
  return u8;
}

let roomSeq = 0;
const uniq = (prefix) => `${prefix}-${Date.now().toString(36)}-${(roomSeq++).toString(36)}`;

/**
 * One test run's sockets: opens them with the mode's options, records what
 * each receives, closes them all at the end.
 */
class Clients {
  constructor(lib, mode) {
    this.lib = lib;
    this.mode = mode;
    this.sockets = [];
    this.managers = [];
  }

  opts(extra = {}) {
    return { forceNew: true, reconnection: false, timeout: 5000, ...MODES[this.mode], ...extra };
  }

  /** A connected socket on a new connection, or a rejection with the connect_error. */
  async connect(url, extra = {}) {
    const socket = this.lib.io(url, this.opts(extra));
    this.sockets.push(socket);
    // The Engine.IO open packet (the engine is created at once, and opens
    // asynchronously).
    socket.handshakeData = null;
    socket.io.engine?.once('handshake', (data) => {
      socket.handshakeData = data;
    });
    await waitConnect(socket);
    return socket;
  }

  /** A Manager (one Engine.IO connection) for several namespaces. */
  manager(url, extra = {}) {
    const m = new this.lib.Manager(url, this.opts(extra));
    this.managers.push(m);
    return m;
  }

  closeAll() {
    for (const s of this.sockets) s.disconnect();
    for (const m of this.managers) {
      for (const s of Object.values(m.nsps)) s.disconnect();
      m._close?.();
    }
  }
}

function waitConnect(socket, ms = 5000) {
  return withTimeout(
    new Promise((resolve, reject) => {
      if (socket.connected) return resolve(socket);
      const onConnect = () => {
        socket.off('connect_error', onError);
        resolve(socket);
      };
      const onError = (err) => {
        socket.off('connect', onConnect);
        const e = new Error(`connect_error: ${err && err.message}`);
        e.sio = err;
        reject(e);
      };
      socket.once('connect', onConnect);
      socket.once('connect_error', onError);
    }),
    ms,
    `connect of ${socket.nsp}`,
  );
}

/** The connect_error of a socket that must be refused. */
function waitRefused(socket, ms = 5000) {
  return withTimeout(
    new Promise((resolve, reject) => {
      socket.once('connect', () => reject(new Error(`${socket.nsp}: connected, expected a connect_error`)));
      socket.once('connect_error', resolve);
    }),
    ms,
    `connect_error of ${socket.nsp}`,
  );
}

/** Every arguments array `socket` receives for `event`, in order. */
function record(socket, event) {
  const got = [];
  socket.on(event, (...args) => got.push(args));
  return got;
}

/**
 * A server event's arguments as the client sees them: with connection
 * state recovery on, the server appends the packet's offset (a string) to
 * every event it emits without an ack (broadcast or not), which the client
 * keeps for its next reconnection and also passes to the listener. Checks
 * that it is there and returns the rest.
 */
function stripOffset(args, wantLen, what) {
  assert(
    args.length === wantLen + 1 && typeof args[wantLen] === 'string' && args[wantLen].length > 0,
    `${what}: expected ${wantLen} argument(s) plus the recovery offset (a string), got ${show(args)}`,
  );
  return args.slice(0, wantLen);
}

/** The first argument of the ack (emitWithAck resolves with that alone). */
const emitAck = (socket, ...args) => withTimeout(socket.emitWithAck(...args), 5000, `ack of ${args[0]}`);
/** Every argument of the ack. */
const emitAckAll = (socket, ...args) =>
  withTimeout(new Promise((resolve) => socket.emit(...args, (...got) => resolve(got))), 5000, `ack of ${args[0]}`);

// ---------------------------------------------------------------- checks

/** Each check: async (ctx) => detail string (or throws). */
const CHECKS = [
  ['connect and transport', async ({ c, url, mode }) => {
    const s = await c.connect(url);
    const e = s.io.engine;
    const first = e.transport.name;
    assert(typeof s.id === 'string' && s.id.length > 0, `socket.id ${show(s.id)}`);
    // The Engine.IO handshake: the open packet's values.
    const hs = s.handshakeData;
    assert(hs, 'no Engine.IO "handshake" event seen');
    assert(typeof hs.sid === 'string' && hs.sid.length > 0 && hs.sid !== s.id, `handshake sid ${show(hs.sid)} (socket.id ${s.id})`);
    same(
      { pingInterval: hs.pingInterval, pingTimeout: hs.pingTimeout, maxPayload: hs.maxPayload },
      { pingInterval: 1000, pingTimeout: 1000, maxPayload: 1000000 },
      'handshake',
    );
    // The upgrades offered: WebSocket from polling, none on a WebSocket.
    // (In upgrade mode the session opened on polling; a fast upgrade may be
    // done by the time the transport is read here.)
    same(hs.upgrades, mode === 'websocket' ? [] : ['websocket'], 'handshake upgrades');
    if (mode === 'upgrade') {
      await until(() => s.io.engine.transport.name === 'websocket', 5000, 'the upgrade to websocket');
      // The connection still works after the upgrade.
      same(await emitAck(s, 'echo', 'after upgrade'), 'after upgrade', 'echo after upgrade');
    } else if (mode === 'websocket') {
      assert(first === 'websocket', `transport ${first}, expected websocket`);
    } else {
      await sleep(500);
      assert(s.io.engine.transport.name === 'polling', `transport ${s.io.engine.transport.name}, expected polling`);
    }
    return `${first} -> ${s.io.engine.transport.name}, id ${s.id}`;
  }],

  ['whoami', async ({ c, url }) => {
    const s = await c.connect(url, { auth: { token: 'good' } });
    same(await emitAck(s, 'whoami'), { id: s.id, rooms: [], recovered: false }, 'whoami');
    return `id ${s.id}`;
  }],

  ['join, publish, leave', async ({ c, url }) => {
    const room = uniq('room');
    const [a, b, outsider] = await Promise.all([c.connect(url), c.connect(url), c.connect(url)]);
    const gotA = record(a, 'room-msg');
    const gotB = record(b, 'room-msg');
    const gotOut = record(outsider, 'room-msg');
    same(await emitAck(a, 'join', room), true, 'join ack (a)');
    same(await emitAck(b, 'join', room), true, 'join ack (b)');
    same((await emitAck(a, 'whoami')).rooms, [room], 'whoami rooms after join');
    // b publishes with an ack: a gets it once, b (the sender) and the
    // outsider never.
    same(await emitAck(b, 'publish', room, 'room-msg', { n: 1 }, 'two', [3]), true, 'publish ack');
    await until(() => gotA.length >= 1, 3000, 'the publish to reach a');
    await sleep(QUIET_MS);
    assert(gotA.length === 1, `a received the publish ${gotA.length} times`);
    same(stripOffset(gotA[0], 3, 'publish'), [{ n: 1 }, 'two', [3]], 'published arguments');
    assert(gotB.length === 0, `the sender received its own publish ${gotB.length} times`);
    assert(gotOut.length === 0, `a socket outside the room received the publish ${gotOut.length} times`);
    // A publish without an ack also arrives.
    b.emit('publish', room, 'room-msg', 'no-ack');
    await until(() => gotA.length >= 2, 3000, 'the publish without ack to reach a');
    same(stripOffset(gotA[1], 1, 'publish without ack'), ['no-ack'], 'published arguments (no ack)');
    // After leave, a gets nothing.
    same(await emitAck(a, 'leave', room), true, 'leave ack');
    same((await emitAck(a, 'whoami')).rooms, [], 'whoami rooms after leave');
    same(await emitAck(b, 'publish', room, 'room-msg', 'after-leave'), true, 'publish ack after leave');
    await sleep(QUIET_MS);
    assert(gotA.length === 2, `a received ${gotA.length - 2} publish(es) after leaving the room`);
    return `room ${room}`;
  }],

  ['acks', async ({ c, url }) => {
    const s = await c.connect(url);
    const args = ['hello', 42, 1.5, -7, true, false, null, { a: [1, 2, { b: null }], s: 'h\u00e9las \u2713 \u{1F600}' }, []];
    same(await emitAckAll(s, 'echo', ...args), args, 'echo ack arguments');
    same(await emitAckAll(s, 'echo'), [], 'echo ack without arguments');
    // A server event without ack: echo-event -> "echo". With state
    // recovery on, the server stores every event it emits without an ack
    // (socket.emit too, not only broadcasts) and appends its offset.
    const echoes = record(s, 'echo');
    s.emit('echo-event', 'x', { y: 1 });
    await until(() => echoes.length >= 1, 3000, 'the "echo" event');
    same(stripOffset(echoes[0], 2, '"echo" event'), ['x', { y: 1 }], '"echo" event arguments');
    // The server's ack to the client: the client answers.
    s.on('add', (x, y, cb) => cb(x + y));
    same(await emitAck(s, 'ask', 'add', 2, 3), 5, 'ask: the answer to the server\'s ack');
    // An event that asks for an ack carries no offset: exactly its arguments.
    let asked = null;
    s.on('shape', (...got) => {
      const cb = got.pop();
      asked = got;
      cb({ ...got[0], answered: true });
    });
    same(await emitAck(s, 'ask', 'shape', { k: [1, 'v'] }), { k: [1, 'v'], answered: true }, 'ask with an object');
    same(asked, [{ k: [1, 'v'] }], 'the arguments of the server\'s event with an ack');
    // With the client's own timeout (emitWithAck through .timeout()).
    same(await s.timeout(3000).emitWithAck('echo', 'timed'), 'timed', 'echo through timeout()');
    // 512 KiB of text through an ack (maxHttpBufferSize is 1e6).
    const big = 'wsx \u2713 '.repeat(65536);
    same(await emitAck(s, 'echo', big), big, 'echo of 512 KiB');
    return `${args.length} args echoed, ask answered`;
  }],

  ['ack timeout', async ({ c, url }) => {
    const s = await c.connect(url);
    let asked = 0;
    s.on('ignored', () => {
      asked += 1; // never answers
    });
    const t0 = Date.now();
    same(await withTimeout(s.emitWithAck('ask', 'ignored', 'q'), 6000, 'ask timeout'), { error: 'timeout' }, 'ask unanswered');
    const ms = Date.now() - t0;
    assert(asked === 1, `the client was asked ${asked} times`);
    assert(ms >= 1500 && ms < 5000, `the server's ack timed out after ${ms} ms, expected about 2000`);
    return `timed out after ${ms} ms`;
  }],

  ['binary', async ({ c, url, bin }) => {
    const s = await c.connect(url);
    const one = bin(pattern(256));
    const two = bin(pattern(65536, 3));
    const empty = bin(new Uint8Array(0));
    // Two attachments at the top level, then nested ones.
    same(await emitAckAll(s, 'echo', one, two), [one, two], 'two binary arguments');
    const nested = { a: one, list: [1, { b: two, c: 'text' }, empty], deep: { deeper: { d: bin(pattern(3, 9)) } } };
    same(await emitAckAll(s, 'echo', 'label', nested, 7), ['label', nested, 7], 'nested binary');
    // Binary in a server event (echo-event) and in a broadcast.
    const echoes = record(s, 'echo');
    s.emit('echo-event', { blob: one }, two);
    await until(() => echoes.length >= 1, 3000, 'the binary "echo" event');
    same(stripOffset(echoes[0], 2, 'binary "echo" event'), [{ blob: one }, two], 'binary "echo" event');
    const room = uniq('bin');
    const peer = await c.connect(url);
    const got = record(peer, 'bin-msg');
    same(await emitAck(peer, 'join', room), true, 'join ack');
    same(await emitAck(s, 'publish', room, 'bin-msg', one, { two }), true, 'publish ack');
    await until(() => got.length >= 1, 3000, 'the binary publish');
    await sleep(QUIET_MS);
    assert(got.length === 1, `the binary publish arrived ${got.length} times`);
    same(stripOffset(got[0], 2, 'binary publish'), [one, { two }], 'binary publish');
    // An ack carrying binary, both ways: the client's answer to the
    // server's ack has binary, and so has the server's ack to the client.
    s.on('reverse', (buf, cb) => cb({ reversed: bin(bytesOf(buf).reverse()) }));
    same(await emitAck(s, 'ask', 'reverse', bin(Uint8Array.of(1, 2, 3))), { reversed: bin(Uint8Array.of(3, 2, 1)) }, 'binary answer to the server\'s ack');
    return 'attachments echoed';
  }],

  ['namespaces', async ({ c, url }) => {
    const m = c.manager(url);
    const main = m.socket('/');
    const admin = m.socket('/admin');
    const dyn = m.socket('/dyn-abc');
    const nope = m.socket('/nope');
    const refused = waitRefused(nope); // listen before it can come
    await Promise.all([waitConnect(main), waitConnect(admin), waitConnect(dyn)]);
    const err = await refused;
    assert(err.message === 'Invalid namespace', `/nope: connect_error ${show(err.message)}, expected "Invalid namespace"`);
    same(await emitAckAll(admin, 'echo', 'adm', 1), ['adm', 1], '/admin echo');
    same(await emitAck(dyn, 'echo', { d: true }), { d: true }, '/dyn-abc echo');
    same(await emitAck(dyn, 'nsp'), '/dyn-abc', '/dyn-abc nsp');
    same(await emitAck(main, 'echo', 'main'), 'main', '/ echo');
    // The sockets share one Engine.IO connection.
    assert(main.io === admin.io && admin.io === dyn.io, 'namespaces not multiplexed on one manager');
    // Another dynamic namespace, and one that does not match the pattern.
    const dyn2 = m.socket('/dyn-x9');
    await waitConnect(dyn2);
    same(await emitAck(dyn2, 'nsp'), '/dyn-x9', '/dyn-x9 nsp');
    const bad = m.socket('/dyn-UPPER');
    const err2 = await waitRefused(bad);
    assert(err2.message === 'Invalid namespace', `/dyn-UPPER: connect_error ${show(err2.message)}`);
    // Leaving one namespace keeps the others, and it can come back.
    const left = new Promise((r) => admin.once('disconnect', r));
    admin.disconnect();
    same(await withTimeout(left, 3000, '/admin disconnect'), 'io client disconnect', '/admin disconnect reason');
    same(await emitAck(main, 'echo', 'still'), 'still', '/ echo after /admin left');
    same(await emitAck(dyn, 'nsp'), '/dyn-abc', '/dyn-abc after /admin left');
    admin.connect();
    await waitConnect(admin);
    same(await emitAck(admin, 'echo', 'back'), 'back', '/admin echo after coming back');
    // /admin alone on its own connection (no "/" on it).
    const solo = await c.connect(`${url}/admin`);
    same(await emitAck(solo, 'echo', 'solo'), 'solo', '/admin alone');
    return '/, /admin, /dyn-abc, /dyn-x9 connected; /nope, /dyn-UPPER refused';
  }],

  ['middleware refusal', async ({ c, url }) => {
    const s = c.lib.io(url, c.opts({ auth: { token: 'bad' } }));
    c.sockets.push(s);
    const err = await waitRefused(s);
    assert(err.message === 'unauthorized', `connect_error message ${show(err.message)}, expected "unauthorized"`);
    same(err.data, { reason: 'bad token' }, 'connect_error data');
    assert(!s.connected && !s.active, `refused socket connected=${s.connected} active=${s.active}`);
    // /admin has no middleware: the bad token connects there.
    const admin = await c.connect(`${url}/admin`, { auth: { token: 'bad' } });
    same(await emitAck(admin, 'echo', 1), 1, '/admin echo with the bad token');
    return 'refused with unauthorized {"reason":"bad token"}';
  }],

  ['heartbeat', async ({ c, url }) => {
    // Idle for longer than pingInterval + pingTimeout (2 s): the server's
    // pings and the client's pongs keep the connection open.
    const s = await c.connect(url);
    let pings = 0;
    const disconnects = [];
    s.io.on('ping', () => {
      pings += 1;
    });
    s.on('disconnect', (reason) => disconnects.push(reason));
    await sleep(2600);
    assert(disconnects.length === 0, `disconnected while idle: ${show(disconnects)}`);
    assert(pings >= 2, `${pings} ping(s) from the server in 2.6 s, expected 2 or more (pingInterval 1000 ms)`);
    same(await emitAck(s, 'echo', 'still here'), 'still here', 'echo after 2.6 s idle');
    return `${pings} pings in 2.6 s`;
  }],

  ['payload limit', async ({ c, url }) => {
    // maxHttpBufferSize 1e6: a larger packet ends the connection (the
    // official server: WebSocket close, or HTTP 413 to the polling POST).
    const s = await c.connect(url);
    const reasons = [];
    s.on('disconnect', (reason) => reasons.push(reason));
    let acked = false;
    s.emit('echo', 'x'.repeat(1100000), () => {
      acked = true;
    });
    await until(() => reasons.length > 0, 5000, 'the disconnect after a 1.1 MB packet');
    assert(!acked, 'the 1.1 MB packet was echoed');
    assert(['transport close', 'transport error'].includes(reasons[0]), `disconnect reason ${show(reasons[0])}`);
    return `disconnected: ${reasons[0]}`;
  }],

  ['state recovery', async ({ c, url }) => {
    const room = uniq('recover');
    // a reconnects by itself 1 s after the cut: b's publishes happen
    // in between (checked below, not assumed).
    const a = await c.connect(url, {
      auth: { token: 'good' },
      reconnection: true,
      reconnectionDelay: 1000,
      reconnectionDelayMax: 1000,
      randomizationFactor: 0,
    });
    const b = await c.connect(url);
    const got = record(a, 'missed');
    same(await emitAck(a, 'join', room), true, 'join ack');
    // a needs an offset to recover from: the last broadcast it received.
    same(await emitAck(b, 'publish', room, 'missed', 0), true, 'publish ack (before the cut)');
    await until(() => got.length >= 1, 3000, 'the publish before the cut');
    const id = a.id;
    const events = [];
    a.on('disconnect', (reason) => events.push(['disconnect', reason, Date.now()]));
    a.on('connect', () => events.push(['connect', a.recovered, Date.now()]));
    a.on('connect_error', (err) => events.push(['connect_error', err.message, Date.now()]));
    // skipMiddlewares: a recovered session skips the middleware, so the
    // token that "/" refuses does not matter when it comes back.
    a.auth = { token: 'bad' };
    // Cut the network: close the Engine.IO connection under the socket
    // (as the official tests do); the manager reconnects.
    a.io.engine.close();
    await until(() => events.length >= 1, 3000, 'the disconnect');
    assert(events[0][0] === 'disconnect', `first event ${show(events[0])}`);
    for (const n of [1, 2, 3]) same(await emitAck(b, 'publish', room, 'missed', n), true, `publish ack ${n}`);
    const published = Date.now();
    await until(() => events.some((e) => e[0] !== 'disconnect'), 5000, 'the reconnection');
    const refused = events.find((e) => e[0] === 'connect_error');
    assert(!refused, `the reconnection was refused: connect_error ${show(refused && refused[1])} (not recovered, so the middleware ran)`);
    const connectEv = events.find((e) => e[0] === 'connect');
    assert(connectEv[2] >= published, 'a reconnected before b had published the three events: the check did not test recovery');
    assert(a.recovered === true, `socket.recovered is ${a.recovered}, expected true (disconnect reason ${events[0][1]})`);
    assert(a.id === id, `socket.id changed: ${id} -> ${a.id}`);
    await until(() => got.length >= 4, 3000, 'the three missed events');
    await sleep(QUIET_MS);
    same(got.map((args) => stripOffset(args, 1, 'missed event')[0]), [0, 1, 2, 3], 'events received (0 before the cut, 1-3 missed)');
    same(await emitAck(a, 'whoami'), { id, rooms: [room], recovered: true }, 'whoami after recovery');
    // The room still works live.
    same(await emitAck(b, 'publish', room, 'missed', 4), true, 'publish ack after recovery');
    await until(() => got.length >= 5, 3000, 'a publish after recovery');
    return `recovered ${id} after "${events[0][1]}" (middleware skipped), missed events 1-3 once, in order`;
  }],
];

/** The two-node check: a socket on each server, publishes both ways. */
const TWO_NODE_CHECK = ['two nodes', async ({ c, url, second }) => {
  const room = uniq('cluster');
  const [a, b, a2] = await Promise.all([c.connect(url), c.connect(second), c.connect(url)]);
  const got = [a, b, a2].map((s) => record(s, 'node-msg'));
  for (const s of [a, b]) same(await emitAck(s, 'join', room), true, 'join ack');
  // a -> b (other node), b -> a (other node); a2 is outside the room.
  same(await emitAck(a, 'publish', room, 'node-msg', 'from-first', { bin: c.bin(pattern(16)) }), true, 'publish ack (first node)');
  await until(() => got[1].length >= 1, 3000, 'the publish from the first node to reach the second');
  same(await emitAck(b, 'publish', room, 'node-msg', 'from-second'), true, 'publish ack (second node)');
  await until(() => got[0].length >= 1, 3000, 'the publish from the second node to reach the first');
  await sleep(QUIET_MS * 2);
  assert(got[0].length === 1, `the first node's socket received ${got[0].length} messages, expected 1`);
  assert(got[1].length === 1, `the second node's socket received ${got[1].length} messages, expected 1`);
  assert(got[2].length === 0, `a socket outside the room received ${got[2].length} messages`);
  same(stripOffset(got[1][0], 2, 'first -> second'), ['from-first', { bin: c.bin(pattern(16)) }], 'first -> second');
  same(stripOffset(got[0][0], 1, 'second -> first'), ['from-second'], 'second -> first');
  return `${url} <-> ${second}`;
}];

/**
 * Runs every check for one transport mode; reports each; resolves to the
 * number of failures. `only`: check names to run (all if empty).
 * `concurrency`: how many checks run at once (each has its own sockets and
 * rooms); a browser needs few with long-polling, since it opens at most 6
 * HTTP/1.1 connections to one server and each polling socket holds one.
 */
export async function runChecks({ lib, url, second = null, mode, bin, report, only = [], concurrency = Infinity }) {
  if (!MODES[mode]) throw new Error(`unknown mode ${mode}`);
  const checks = (second ? [...CHECKS, TWO_NODE_CHECK] : CHECKS).filter(([name]) => only.length === 0 || only.includes(name));
  // The slowest first: they mostly wait.
  const slow = (name) => ['ack timeout', 'heartbeat'].includes(name);
  checks.sort(([a], [b]) => slow(b) - slow(a));
  let failures = 0;
  let next = 0;
  const worker = async () => {
    while (next < checks.length) {
      await runOne(checks[next++]);
    }
  };
  const runOne = async ([name, fn]) => {
    const c = new Clients(lib, mode);
    c.bin = bin;
    const t0 = Date.now();
    let ok = true;
    let detail;
    try {
      detail = await withTimeout(fn({ c, url, second, mode, bin }), CHECK_TIMEOUT_MS, name);
    } catch (e) {
      ok = false;
      detail = e && e.message ? e.message : String(e);
      failures += 1;
    } finally {
      c.closeAll();
    }
    report({ mode, check: name, ok, ms: Date.now() - t0, detail: detail || '' });
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, checks.length) }, worker));
  return failures;
}

export const CHECK_NAMES = [...CHECKS.map(([n]) => n), TWO_NODE_CHECK[0]];

/**
 * The command line of client.mjs and browser.mjs: `URL [--mode M]...
 * [--check NAME]... [--second URL]` (`--second` only where `twoNodes`).
 * Prints the usage and exits 2 on an error; modes default to all of them.
 */
export function parseArgs(script, argv, { twoNodes }) {
  const usage = (msg) => {
    const second = twoNodes ? ' [--second URL]' : '';
    process.stderr.write(
      `${script}: ${msg}\nusage: node ${script} URL [--mode ${Object.keys(MODES).join('|')}]... [--check NAME]...${second}\n` +
        `checks: ${CHECK_NAMES.join(', ')}\n`,
    );
    process.exit(2);
  };
  const args = { url: null, second: null, modes: [], only: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === '--mode') {
      const m = value();
      if (!MODES[m]) usage(`unknown mode ${m}`);
      args.modes.push(m);
    } else if (a === '--check') {
      const c = value();
      if (!CHECK_NAMES.includes(c) || (!twoNodes && c === TWO_NODE_CHECK[0])) usage(`unknown check ${c}`);
      args.only.push(c);
    } else if (twoNodes && a === '--second') args.second = value().replace(/\/+$/, '');
    else if (!a.startsWith('--') && args.url === null) args.url = a.replace(/\/+$/, '');
    else usage(`unexpected argument ${a}`);
  }
  if (!args.url) usage('URL is missing');
  if (args.modes.length === 0) args.modes.push(...Object.keys(MODES));
  return args;
}
