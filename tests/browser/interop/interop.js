// The page side of wsx's Chromium interop matrix: the browser's own
// WebSocket against the `wsx serve` that served this page (same origin).
// tests/browser/interop.js (Node, playwright-core) calls the functions of
// `window.wsxInterop`; each opens its own connection(s), checks what it got
// and resolves to one result or an array of results, plain JSON:
//
//   { name: "echo text 65536 B", ok: true, detail: "...", ms: 12 }
//
// A function never rejects: an exception or a timeout becomes ok: false
// with the reason in `detail`.
//
// Messages: text is pseudo-random 1- to 4-byte UTF-8 (it starts with
// "é✓😀" once it is 9 bytes long) of exactly the given size in bytes;
// binary with binaryType "arraybuffer" is pseudo-random bytes sent as an
// ArrayBuffer; with "blob" a compressible counter pattern sent as a Blob.
// Every echo is compared byte for byte (text as a string), and its type
// checked (string, ArrayBuffer, Blob).

const WS_URL = `ws://${location.host}/`;

/** Default time to wait for one event (open, an echo, close). */
const WAIT_MS = 20000;

class Failure extends Error {}

function fail(msg) {
  throw new Failure(msg);
}

// ------------------------------------------------------------ messages

/** xorshift32: deterministic pseudo-random 32-bit numbers. */
function rng(seed) {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

const ALPHABET = ['a', 'b', 'Z', ' ', '7', '\u00e9', '\u00df', '\u2713', '\u20ac', '\u4e2d', '\u{1F600}', '\u{10348}'];
const PREFIX = '\u00e9\u2713\u{1F600}'; // 2 + 3 + 4 bytes

function utf8Length(c) {
  const cp = c.codePointAt(0);
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

/** Pseudo-random characters of exactly `size` UTF-8 bytes. */
function randomText(size, next) {
  const parts = [];
  let len = 0;
  for (;;) {
    const c = ALPHABET[next() % ALPHABET.length];
    const n = utf8Length(c);
    if (len + n > size) break;
    parts.push(c);
    len += n;
  }
  parts.push('x'.repeat(size - len));
  return parts.join('');
}

/**
 * Text of exactly `size` UTF-8 bytes. Past 64 KiB it repeats a block of
 * 65521 bytes (farther apart than DEFLATE's 32 KiB window reaches), plus a
 * tail, so that 16 MiB are quick to build.
 */
export function makeText(size, seed) {
  const next = rng(seed);
  const BLOCK = 65521;
  let s;
  if (size <= BLOCK) {
    s = size >= 9 ? PREFIX + randomText(size - 9, next) : randomText(size, next);
  } else {
    const block = PREFIX + randomText(BLOCK - 9, next);
    s = block.repeat(Math.floor(size / BLOCK)) + randomText(size % BLOCK, next);
  }
  const got = new TextEncoder().encode(s).length;
  if (got !== size) fail(`test bug: text of ${got} bytes, wanted ${size}`);
  return s;
}

/** `size` pseudo-random bytes. */
export function makeRandomBytes(size, seed) {
  const next = rng(seed);
  const words = new Uint32Array(Math.ceil(size / 4));
  for (let i = 0; i < words.length; i++) words[i] = next();
  return new Uint8Array(words.buffer, 0, size);
}

/** `size` bytes of a compressible counter pattern. */
export function makePatternBytes(size) {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (i >> 4) & 0xff;
  return b;
}

function firstDifference(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The message to send for `kind` and `size`, and a check of its echo. */
function message(kind, size, seed) {
  switch (kind) {
    case 'text': {
      const sent = makeText(size, seed);
      return {
        payload: sent,
        async check(got) {
          if (typeof got !== 'string') fail(`echo is ${Object.prototype.toString.call(got)}, not a string`);
          if (got !== sent) {
            const at = firstDifference(sent, got);
            fail(`echo differs: ${got.length} UTF-16 units instead of ${sent.length}, first difference at unit ${at}`);
          }
        },
      };
    }
    case 'arraybuffer':
    case 'blob': {
      const bytes = kind === 'arraybuffer' ? makeRandomBytes(size, seed) : makePatternBytes(size);
      return {
        payload: kind === 'arraybuffer' ? bytes.slice().buffer : new Blob([bytes]),
        async check(got) {
          let echoed;
          if (kind === 'arraybuffer') {
            if (!(got instanceof ArrayBuffer)) fail(`echo is ${Object.prototype.toString.call(got)}, not an ArrayBuffer`);
            echoed = new Uint8Array(got);
          } else {
            if (!(got instanceof Blob)) fail(`echo is ${Object.prototype.toString.call(got)}, not a Blob`);
            echoed = new Uint8Array(await got.arrayBuffer());
          }
          if (!sameBytes(bytes, echoed)) {
            fail(`echo differs: ${echoed.length} bytes instead of ${size}, first difference at byte ${firstDifference(bytes, echoed)}`);
          }
        },
      };
    }
    default:
      fail(`test bug: unknown kind ${kind}`);
  }
}

// ------------------------------------------------------------ connections

/** A WebSocket with a log of its events, a queue of its messages and waits with timeouts. */
class Conn {
  constructor({ protocols, binaryType = 'arraybuffer' } = {}) {
    this.ws = protocols === undefined ? new WebSocket(WS_URL) : new WebSocket(WS_URL, protocols);
    this.ws.binaryType = binaryType;
    this.events = [];
    this.messages = [];
    this.closed = null;
    this.wake = null;
    this.ws.onopen = () => this.note('open');
    this.ws.onerror = () => this.note('error');
    this.ws.onmessage = (e) => {
      this.messages.push(e.data);
      this.note('message');
    };
    this.ws.onclose = (e) => {
      this.closed = { code: e.code, reason: e.reason, wasClean: e.wasClean };
      this.note(`close ${e.code}`);
    };
  }

  note(event) {
    // Consecutive messages are logged once, with a count.
    const last = this.events[this.events.length - 1];
    if (event === 'message' && last && last.startsWith('message')) {
      const n = Number(last.split('×')[1] || 1) + 1;
      this.events[this.events.length - 1] = `message×${n}`;
    } else {
      this.events.push(event);
    }
    const wake = this.wake;
    this.wake = null;
    if (wake) wake();
  }

  /** Wait until `cond()` is truthy (checked after every event), at most `ms`. */
  async until(cond, what, ms = WAIT_MS) {
    const deadline = performance.now() + ms;
    for (;;) {
      const v = cond();
      if (v) return v;
      const left = deadline - performance.now();
      if (left <= 0) fail(`timed out after ${ms} ms waiting for ${what}; events: ${this.events.join(', ')}`);
      await new Promise((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, left);
      });
    }
  }

  describeClose() {
    const c = this.closed;
    return c ? `close code ${c.code}, reason ${JSON.stringify(c.reason)}, wasClean ${c.wasClean}` : 'not closed';
  }

  async opened() {
    await this.until(() => this.ws.readyState !== WebSocket.CONNECTING, 'open');
    if (this.ws.readyState !== WebSocket.OPEN) {
      await this.waitClose(2000).catch(() => {}); // the close event follows the error event
      fail(`did not open: events ${this.events.join(', ')}; ${this.describeClose()}`);
    }
  }

  async next(what) {
    await this.until(() => this.messages.length > 0 || this.closed, what);
    if (this.messages.length === 0) fail(`closed while waiting for ${what}: ${this.describeClose()}`);
    return this.messages.shift();
  }

  async waitClose(ms = WAIT_MS) {
    await this.until(() => this.closed, 'the close event', ms);
    return this.closed;
  }

  /** Close with 1000 if still open and wait for the close event. */
  async finish() {
    if (!this.closed) {
      if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
      await this.waitClose().catch(() => {});
    }
  }
}

async function result(name, fn) {
  const t0 = performance.now();
  try {
    const detail = await fn();
    return { name, ok: true, detail: detail || '', ms: Math.round(performance.now() - t0) };
  } catch (e) {
    const detail = e instanceof Failure ? e.message : `exception: ${e && e.stack ? e.stack : e}`;
    return { name, ok: false, detail, ms: Math.round(performance.now() - t0) };
  }
}

function expectClose(c, { code, reason, wasClean }) {
  const problems = [];
  if (code !== undefined && c.code !== code) problems.push(`code ${c.code}, expected ${code}`);
  if (reason !== undefined && c.reason !== reason) problems.push(`reason ${JSON.stringify(c.reason)}, expected ${JSON.stringify(reason)}`);
  if (wasClean !== undefined && c.wasClean !== wasClean) problems.push(`wasClean ${c.wasClean}, expected ${wasClean}`);
  if (problems.length) fail(problems.join('; '));
}

/** Send `text` and check that it comes back. */
async function roundTrip(conn, text) {
  conn.ws.send(text);
  const got = await conn.next(`the echo of ${JSON.stringify(text)}`);
  if (got !== text) fail(`echo ${JSON.stringify(got)}, expected ${JSON.stringify(text)}`);
}

// ------------------------------------------------------------ cases

const held = new Map();
let heldId = 0;

window.wsxInterop = {
  /** The handshake: extensions as expected for the server's configuration, no subprotocol. */
  handshake({ compression }) {
    return result(`handshake: extensions ${compression ? 'permessage-deflate' : 'none'}`, async () => {
      const conn = new Conn();
      try {
        await conn.opened();
        const ext = conn.ws.extensions;
        if (compression && !/^permessage-deflate(;|$)/.test(ext)) fail(`extensions ${JSON.stringify(ext)}, expected permessage-deflate`);
        if (!compression && ext !== '') fail(`extensions ${JSON.stringify(ext)}, expected none`);
        if (conn.ws.protocol !== '') fail(`protocol ${JSON.stringify(conn.ws.protocol)}, expected none`);
        return `extensions ${JSON.stringify(ext)}`;
      } finally {
        await conn.finish();
      }
    });
  },

  /**
   * Echo of one message per size, one at a time on one connection; then
   * all the sizes up to `pipelineMax` sent at once, echoes checked in order.
   */
  async echo({ kind, sizes, pipelineMax, seed = 1 }) {
    const results = [];
    const conn = new Conn({ binaryType: kind === 'blob' ? 'blob' : 'arraybuffer' });
    const open = await result(`echo ${kind}: open`, () => conn.opened());
    if (!open.ok) return [open];
    for (const size of sizes) {
      results.push(
        await result(`echo ${kind} ${size} B`, async () => {
          const m = message(kind, size, seed + size);
          conn.ws.send(m.payload);
          await m.check(await conn.next(`the echo of ${size} B`));
        }),
      );
    }
    if (pipelineMax !== undefined) {
      const small = sizes.filter((s) => s <= pipelineMax);
      results.push(
        await result(`echo ${kind} pipelined: ${small.join(', ')} B sent at once`, async () => {
          const ms = small.map((size) => message(kind, size, seed + 7 * size + 3));
          for (const m of ms) conn.ws.send(m.payload);
          for (let i = 0; i < ms.length; i++) await ms[i].check(await conn.next(`pipelined echo ${i} (${small[i]} B)`));
        }),
      );
    }
    await conn.finish();
    return results;
  },

  /** The page closes (with a code and reason, or with none); the server answers. */
  close({ code, reason, expect }) {
    const args = code === undefined ? '' : reason === undefined ? `${code}` : `${code}, ${JSON.stringify(reason)}`;
    return result(`close(${args}) by the page`, async () => {
      const conn = new Conn();
      try {
        await conn.opened();
        await roundTrip(conn, 'before close');
        if (code === undefined) conn.ws.close();
        else if (reason === undefined) conn.ws.close(code);
        else conn.ws.close(code, reason);
        const c = await conn.waitClose();
        expectClose(c, expect);
        if (conn.events.includes('error')) fail(`an error event: ${conn.events.join(', ')}`);
        return conn.describeClose();
      } finally {
        await conn.finish();
      }
    });
  },

  /** A subprotocol offered: `expect` is the one selected, or null for a refused handshake. */
  subprotocol({ protocols, expect }) {
    return result(`subprotocol ${JSON.stringify(protocols)} -> ${expect === null ? 'refused' : JSON.stringify(expect)}`, async () => {
      const conn = new Conn({ protocols });
      try {
        if (expect === null) return await refused(conn);
        await conn.opened();
        if (conn.ws.protocol !== expect) fail(`protocol ${JSON.stringify(conn.ws.protocol)}, expected ${JSON.stringify(expect)}`);
        await roundTrip(conn, 'with a subprotocol');
        return `protocol ${JSON.stringify(conn.ws.protocol)}`;
      } finally {
        await conn.finish();
      }
    });
  },

  /** A handshake the server refuses (e.g. 403 for --origin): error, then close 1006, never open. */
  refused({ name }) {
    return result(name, () => refused(new Conn()));
  },

  /** Messages around --max-message-size: `limit` bytes echoed, `limit + 1` closes with 1009. */
  async tooBig({ limit }) {
    const conn = new Conn();
    const results = [];
    // Zeros: with compression the frame is far smaller than the limit, so
    // the limit must apply to the inflated message.
    results.push(
      await result(`max-message-size ${limit}: ${limit} B echoed`, async () => {
        await conn.opened();
        const m = new Uint8Array(limit);
        conn.ws.send(m);
        const got = await conn.next(`the echo of ${limit} B`);
        if (!sameBytes(m, new Uint8Array(got))) fail(`echo differs (${got.byteLength} bytes)`);
      }),
    );
    results.push(
      await result(`max-message-size ${limit}: ${limit + 1} B -> close 1009`, async () => {
        if (conn.ws.readyState !== WebSocket.OPEN) fail(`not open: ${conn.describeClose()}`);
        conn.ws.send(new Uint8Array(limit + 1));
        const c = await conn.waitClose();
        if (conn.messages.length) fail(`${conn.messages.length} message(s) came back`);
        expectClose(c, { code: 1009 });
        return `${conn.describeClose()}; events ${conn.events.join(', ')}`;
      }),
    );
    await conn.finish();
    return results;
  },

  /** Open a connection and keep it for `awaitClose` (after the driver stops the server). */
  async hold() {
    const id = ++heldId;
    const conn = new Conn();
    held.set(id, conn);
    const r = await result('open and echo', async () => {
      await conn.opened();
      await roundTrip(conn, 'held');
    });
    return { id, ...r };
  },

  /** The close event of a held connection, checked against `expect`. */
  awaitClose({ id, name, expect, ms = WAIT_MS }) {
    return result(name, async () => {
      const conn = held.get(id);
      held.delete(id);
      if (!conn) fail(`no held connection ${id}`);
      const c = await conn.waitClose(ms);
      expectClose(c, expect);
      return `${conn.describeClose()}; events ${conn.events.join(', ')}`;
    });
  },

  /** Silent for `seconds` (the server pings meanwhile), then an echo: still open. */
  keepalive({ seconds, name }) {
    return result(name, async () => {
      const conn = new Conn();
      try {
        await conn.opened();
        await new Promise((r) => setTimeout(r, seconds * 1000));
        if (conn.closed) fail(`closed while silent: ${conn.describeClose()}`);
        await roundTrip(conn, 'after the pings');
        return `open after ${seconds} s without a message from the page`;
      } finally {
        await conn.finish();
      }
    });
  },
};

/** Silent until the server closes the connection, after `minMs` and within `maxMs`. */
window.wsxInterop.closedWhenSilent = ({ name, minMs, maxMs, expect }) =>
  result(name, async () => {
    const conn = new Conn();
    try {
      await conn.opened();
      const t0 = performance.now();
      const c = await conn.waitClose(maxMs);
      const after = Math.round(performance.now() - t0);
      expectClose(c, expect);
      if (after < minMs) fail(`closed after ${after} ms, before ${minMs} ms`);
      return `${conn.describeClose()} after ${after} ms`;
    } finally {
      await conn.finish();
    }
  });

/** What a refused connection must show: error then close 1006, not clean, never open. */
async function refused(conn) {
  const c = await conn.waitClose();
  expectClose(c, { code: 1006, wasClean: false });
  const order = conn.events.join(', ');
  if (order !== 'error, close 1006') fail(`events ${order}, expected error, close 1006`);
  return `${conn.describeClose()}; events ${order}`;
}

document.getElementById('status').textContent = 'ready';
