// The page side of wsx's HTTP/2 test with headless Chromium: the browser's
// own WebSocket against the `wsx serve --tls-cert --tls-key` that served
// this page over HTTP/2. tests/browser/http2.js (Node, playwright-core)
// calls the functions of `window.wsxHttp2`; each resolves to one result or
// an array of results, plain JSON, and never rejects:
//
//   { name: "echo text 65536 B", ok: true, detail: "...", ms: 12 }
//
// Text messages are pseudo-random 1- to 4-byte UTF-8 of exactly the given
// size in bytes, binary ones pseudo-random bytes sent as ArrayBuffers;
// every echo is compared with what was sent, and its type checked.

const WS_URL = `wss://${location.host}/`;
/** Longest wait for one event (open, an echo, close). */
const WAIT_MS = 30000;

class Failure extends Error {}

function fail(msg) {
  throw new Failure(msg);
}

/** WebSocket objects this page created. */
let opened = 0;

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

/** Text of exactly `size` UTF-8 bytes; past 64 KiB a block of 65521 bytes repeated, plus a tail. */
function makeText(size, seed) {
  const next = rng(seed);
  const BLOCK = 65521;
  const s = size <= BLOCK ? randomText(size, next) : randomText(BLOCK, next).repeat(Math.floor(size / BLOCK)) + randomText(size % BLOCK, next);
  const got = new TextEncoder().encode(s).length;
  if (got !== size) fail(`test bug: text of ${got} bytes, wanted ${size}`);
  return s;
}

/** `size` pseudo-random bytes. */
function makeBytes(size, seed) {
  const next = rng(seed);
  const words = new Uint32Array(Math.ceil(size / 4));
  for (let i = 0; i < words.length; i++) words[i] = next();
  return new Uint8Array(words.buffer, 0, size);
}

function firstDifference(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/** The payload to send for `kind` and `size`, and a check of its echo. */
function message(kind, size, seed) {
  if (kind === 'text') {
    const sent = makeText(size, seed);
    return {
      payload: sent,
      check(got) {
        if (typeof got !== 'string') fail(`echo is ${Object.prototype.toString.call(got)}, not a string`);
        if (got !== sent) fail(`echo differs: ${got.length} UTF-16 units instead of ${sent.length}, first difference at ${firstDifference(sent, got)}`);
      },
    };
  }
  const bytes = makeBytes(size, seed);
  return {
    payload: bytes.slice().buffer,
    check(got) {
      if (!(got instanceof ArrayBuffer)) fail(`echo is ${Object.prototype.toString.call(got)}, not an ArrayBuffer`);
      const echoed = new Uint8Array(got);
      const at = firstDifference(bytes, echoed);
      if (echoed.length !== size || at !== size) fail(`echo differs: ${echoed.length} bytes instead of ${size}, first difference at byte ${at}`);
    },
  };
}

// ------------------------------------------------------------ connections

/** A WebSocket with a log of its events, a queue of its messages and waits with timeouts. */
class Conn {
  constructor(path = '') {
    this.ws = new WebSocket(WS_URL + path);
    opened += 1;
    this.ws.binaryType = 'arraybuffer';
    this.events = [];
    this.messages = [];
    this.closed = null;
    this.wakers = [];
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
    const last = this.events[this.events.length - 1];
    if (event === 'message' && last && last.startsWith('message')) {
      this.events[this.events.length - 1] = `message×${Number(last.split('×')[1] || 1) + 1}`;
    } else {
      this.events.push(event);
    }
    for (const wake of this.wakers.splice(0)) wake();
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
        this.wakers.push(resolve);
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
    if (this.ws.readyState !== WebSocket.OPEN) fail(`did not open: events ${this.events.join(', ')}; ${this.describeClose()}`);
  }

  async next(what) {
    await this.until(() => this.messages.length > 0 || this.closed, what);
    if (this.messages.length === 0) fail(`closed while waiting for ${what}: ${this.describeClose()}`);
    return this.messages.shift();
  }

  /** Close with `code` (and `reason`) and check the close event: the same code, clean. */
  async closeWith(code, reason) {
    if (reason === undefined) this.ws.close(code);
    else this.ws.close(code, reason);
    const c = await this.until(() => this.closed, 'the close event');
    if (c.code !== code || !c.wasClean) fail(`${this.describeClose()}, expected code ${code}, clean`);
    if (this.events.includes('error')) fail(`an error event: ${this.events.join(', ')}`);
    return this.describeClose();
  }

  /** Close with 1000 if still open, and wait for the close event. */
  async finish() {
    if (this.closed) return;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    await this.until(() => this.closed, 'the close event').catch(() => {});
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

/** The HTTP version of a resource this page fetched (Resource Timing), e.g. "h2". */
function protocolOf(url) {
  const entries = performance.getEntriesByName(new URL(url, location.href).href);
  return entries.length ? entries[entries.length - 1].nextHopProtocol : null;
}

// ------------------------------------------------------------ cases

/** Sockets opened by `together`, kept open until `release`. */
let held = [];

window.wsxHttp2 = {
  /** How the page itself came: HTTP/2 (and the script beside it). */
  page() {
    return result('the page over HTTP/2', async () => {
      const nav = performance.getEntriesByType('navigation')[0];
      if (!nav || nav.nextHopProtocol !== 'h2') fail(`the page came over ${nav && nav.nextHopProtocol}, not h2`);
      const script = protocolOf('http2.js');
      if (script !== 'h2') fail(`http2.js came over ${script}, not h2`);
      return `navigation ${nav.nextHopProtocol}, http2.js ${script}`;
    });
  },

  /** Echo of one message per size, one at a time on one socket. */
  async echo({ kind, sizes, seed = 1 }) {
    const results = [];
    const conn = new Conn(`echo/${kind}`);
    const open = await result(`echo ${kind}: open`, async () => {
      await conn.opened();
      return `extensions ${JSON.stringify(conn.ws.extensions)}`;
    });
    results.push(open);
    if (!open.ok) return results;
    for (const size of sizes) {
      results.push(
        await result(`echo ${kind} ${size} B`, async () => {
          const m = message(kind, size, seed + size);
          conn.ws.send(m.payload);
          m.check(await conn.next(`the echo of ${size} B`));
        }),
      );
    }
    await conn.finish();
    return results;
  },

  /** The page closes with `code`: the close event shows the server's close frame with it. */
  close({ code, reason }) {
    return result(`close(${code}, ${JSON.stringify(reason)}) by the page`, async () => {
      const conn = new Conn('close');
      try {
        await conn.opened();
        conn.ws.send('before close');
        if ((await conn.next('the echo before close')) !== 'before close') fail('wrong echo before close');
        return await conn.closeWith(code, reason);
      } finally {
        await conn.finish();
      }
    });
  },

  /**
   * `n` sockets opened at once, then messages on all of them interleaved
   * (socket 0 sends 1 MiB first, the others small ones meanwhile); the
   * sockets stay open for the driver's look at the server, until `release`.
   */
  together({ n, rounds = 8 }) {
    return result(`${n} sockets at once, ${rounds} messages each, interleaved`, async () => {
      held = Array.from({ length: n }, (_, i) => new Conn(`together/${i}`));
      await Promise.all(held.map((c) => c.opened()));
      const big = message('arraybuffer', 1 << 20, 77);
      held[0].ws.send(big.payload);
      const expected = held.map(() => []);
      for (let r = 0; r < rounds; r++) {
        held.forEach((c, i) => {
          const m = message(r % 2 ? 'arraybuffer' : 'text', 100 * r + i, 1000 * i + r);
          c.ws.send(m.payload);
          expected[i].push(m);
        });
      }
      big.check(await held[0].next('the 1 MiB echo'));
      await Promise.all(
        held.map(async (c, i) => {
          for (let r = 0; r < rounds; r++) expected[i][r].check(await c.next(`socket ${i} echo ${r}`));
        }),
      );
      return `${n} open`;
    });
  },

  /** /metrics as this page fetches it (over its HTTP/2 connection, as a stream of it). */
  async metrics() {
    const url = `/metrics?at=${performance.now()}`;
    const text = await (await fetch(url, { cache: 'no-store' })).text();
    return { text, protocol: protocolOf(url), held: held.filter((c) => c.ws.readyState === WebSocket.OPEN).length };
  },

  /** Close the held sockets, socket i with 4002 + i, and check each close event. */
  release() {
    return result(`close the ${held.length} held sockets with their own codes`, async () => {
      const closed = await Promise.all(held.map((c, i) => c.closeWith(4002 + i)));
      held = [];
      return `${closed.length} closed`;
    });
  },

  opened() {
    return opened;
  },
};

document.getElementById('status').textContent = 'ready';
