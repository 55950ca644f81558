// The WebSocket side of the HTTP/2 interop peers (h2-client.mjs,
// h2-server.mjs): RFC 6455 framing written here, over whatever duplex
// stream carries it (an HTTP/2 stream of Node's `http2`, or a TCP socket
// after an HTTP/1.1 upgrade), so that nothing of wsx and no WebSocket
// library sits on the peer's side.
//
// A client masks every frame it sends and refuses masked frames; a server
// the other way round (RFC 6455 §5.1). No extension is negotiated, so the
// RSV bits must be 0. Messages are reassembled from their fragments, pings
// are answered, and a close frame is answered with the same code (once),
// after which the duplex is ended.

import { randomBytes } from 'node:crypto';

export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** One frame's bytes; masked with a fresh key when `mask`. */
export function encodeFrame(opcode, payload, { fin = true, mask = false } = {}) {
  const len = payload.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + ext + (mask ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | opcode;
  if (ext === 0) head[1] = len;
  else if (ext === 2) {
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  if (!mask) return Buffer.concat([head, payload]);
  head[1] |= 0x80;
  const key = randomBytes(4);
  key.copy(head, 2 + ext);
  const body = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) body[i] = payload[i] ^ key[i & 3];
  return Buffer.concat([head, body]);
}

/** A close frame's payload: the code, then the UTF-8 reason. */
export function closePayload(code, reason = '') {
  if (code === undefined) return Buffer.alloc(0);
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code, 0);
  return Buffer.concat([b, Buffer.from(reason, 'utf8')]);
}

/** Bytes as they arrive, taken out in exact amounts without copying them all at every chunk. */
class Bytes {
  constructor() {
    this.chunks = [];
    this.length = 0;
  }

  push(chunk) {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The first `n` bytes (n <= length), left in place. */
  peek(n) {
    if (this.chunks[0].length >= n) return this.chunks[0].subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    for (const c of this.chunks) {
      const k = Math.min(c.length, n - at);
      c.copy(out, at, 0, k);
      at += k;
      if (at === n) break;
    }
    return out;
  }

  /** Remove and return the first `n` bytes (n <= length). */
  take(n) {
    const parts = [];
    let left = n;
    while (left > 0) {
      const c = this.chunks[0];
      if (c.length <= left) {
        parts.push(c);
        this.chunks.shift();
        left -= c.length;
      } else {
        parts.push(c.subarray(0, left));
        this.chunks[0] = c.subarray(left);
        left = 0;
      }
    }
    this.length -= n;
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, n);
  }
}

/**
 * One WebSocket over `duplex`. `role` is 'client' or 'server'. Data
 * messages and the peer's close come out of `next()` in order, as
 * `{ type: 'text' | 'binary', data: Buffer }` or
 * `{ type: 'close', code, reason }`; a protocol error or the end of the
 * duplex without a close comes out as `{ type: 'error', error }` or
 * `{ type: 'end' }`.
 */
export class WsConn {
  constructor(duplex, role, { maxMessage = 64 << 20 } = {}) {
    this.duplex = duplex;
    this.client = role === 'client';
    this.maxMessage = maxMessage;
    this.bytes = new Bytes();
    this.fragments = null; // { opcode, parts, length } while a message is being reassembled
    this.queue = [];
    this.waiters = [];
    this.closeSent = false;
    this.closeReceived = null;
    this.done = false;
    this.pongs = [];
    duplex.on('data', (chunk) => this.onData(chunk));
    duplex.on('end', () => this.finish({ type: 'end' }));
    duplex.on('close', () => this.finish({ type: 'end' }));
    duplex.on('error', (error) => this.finish({ type: 'error', error: String(error) }));
  }

  write(opcode, payload, fin = true) {
    if (this.duplex.destroyed || this.duplex.writableEnded) return;
    this.duplex.write(encodeFrame(opcode, payload, { fin, mask: this.client }));
  }

  /** Send a data message, in `fragments` frames (pings may go between them with `between`). */
  send(type, data, { fragments = 1, between } = {}) {
    const opcode = type === 'text' ? OP.TEXT : OP.BINARY;
    const n = Math.max(1, Math.min(fragments, data.length || 1));
    const step = Math.ceil(data.length / n);
    for (let i = 0; i < n; i++) {
      const part = data.subarray(i * step, Math.min(data.length, (i + 1) * step));
      this.write(i === 0 ? opcode : OP.CONT, part, i === n - 1);
      if (between && i < n - 1) between(i);
    }
  }

  ping(payload) {
    this.write(OP.PING, payload);
  }

  /** Send a close frame (once). */
  close(code, reason) {
    if (this.closeSent) return;
    this.closeSent = true;
    this.write(OP.CLOSE, closePayload(code, reason));
    // The closing handshake is over when both close frames went: end our
    // side (END_STREAM on HTTP/2).
    if (this.closeReceived) this.duplex.end();
  }

  /** The next data message or how the connection ended. */
  next() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.done) return Promise.resolve(this.doneEvent);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  emit(event) {
    const w = this.waiters.shift();
    if (w) w(event);
    else this.queue.push(event);
  }

  finish(event) {
    if (this.done) return;
    this.done = true;
    this.doneEvent = event;
    for (const w of this.waiters.splice(0)) w(event);
  }

  /** Fail the connection: `next()` says why. Returns null (no frame). */
  fail(why) {
    this.emit({ type: 'error', error: why });
    this.finish({ type: 'error', error: why });
    this.duplex.destroy();
    return null;
  }

  onData(chunk) {
    this.bytes.push(chunk);
    while (!this.done) {
      const frame = this.parse();
      if (frame === null) return;
      this.onFrame(frame);
    }
  }

  /** The next whole frame, unmasked; null if more bytes are needed or it failed the connection. */
  parse() {
    const b = this.bytes;
    if (b.length < 2) return null;
    const h = b.peek(2);
    const fin = (h[0] & 0x80) !== 0;
    const rsv = h[0] & 0x70;
    const opcode = h[0] & 0x0f;
    const masked = (h[1] & 0x80) !== 0;
    let len = h[1] & 0x7f;
    let headLen = 2 + (len === 126 ? 2 : len === 127 ? 8 : 0) + (masked ? 4 : 0);
    if (b.length < headLen) return null;
    const head = b.peek(headLen);
    if (len === 126) len = head.readUInt16BE(2);
    else if (len === 127) {
      const big = head.readBigUInt64BE(2);
      if (big > BigInt(this.maxMessage)) return this.fail(`a frame of ${big} bytes`);
      len = Number(big);
    }
    if (b.length < headLen + len) return null;
    b.take(headLen);
    let payload = b.take(len);
    if (rsv) return this.fail(`RSV bits ${rsv >> 4} set with no extension negotiated`);
    if (masked === this.client) return this.fail(this.client ? 'a masked frame from the server' : 'an unmasked frame from the client');
    if (masked) {
      const key = head.subarray(headLen - 4, headLen);
      const out = Buffer.allocUnsafe(len);
      for (let i = 0; i < len; i++) out[i] = payload[i] ^ key[i & 3];
      payload = out;
    }
    return { fin, opcode, payload };
  }

  onFrame({ fin, opcode, payload }) {
    if (opcode >= 0x8) {
      if (!fin || payload.length > 125) return this.fail(`control frame ${opcode}: fin ${fin}, ${payload.length} bytes`);
      if (opcode === OP.PING) return this.write(OP.PONG, payload);
      if (opcode === OP.PONG) return void this.pongs.push(payload);
      if (opcode !== OP.CLOSE) return this.fail(`reserved opcode ${opcode}`);
      if (payload.length === 1) return this.fail('a close payload of 1 byte');
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      let reason;
      try {
        reason = utf8.decode(payload.subarray(2));
      } catch {
        return this.fail('a close reason that is not UTF-8');
      }
      this.closeReceived = { code, reason };
      this.emit({ type: 'close', code, reason });
      // Answer with the same code, and end our side of the duplex.
      if (!this.closeSent) this.close(code === 1005 ? undefined : code, '');
      else this.duplex.end();
      return;
    }
    if (this.closeReceived) return this.fail('a data frame after the close frame');
    if (opcode === OP.CONT) {
      if (!this.fragments) return this.fail('a continuation frame with no message started');
    } else if (opcode === OP.TEXT || opcode === OP.BINARY) {
      if (this.fragments) return this.fail('a new message before the last one ended');
      this.fragments = { opcode, parts: [], length: 0 };
    } else {
      return this.fail(`reserved opcode ${opcode}`);
    }
    const m = this.fragments;
    m.parts.push(payload);
    m.length += payload.length;
    if (m.length > this.maxMessage) return this.fail(`a message of more than ${this.maxMessage} bytes`);
    if (!fin) return;
    this.fragments = null;
    const data = Buffer.concat(m.parts, m.length);
    if (m.opcode === OP.TEXT) {
      try {
        utf8.decode(data);
      } catch {
        return this.fail('a text message that is not UTF-8');
      }
    }
    this.emit({ type: m.opcode === OP.TEXT ? 'text' : 'binary', data });
  }
}

/** Text of exactly `size` UTF-8 bytes, of 1- to 4-byte characters. */
export function randomText(size) {
  const alphabet = ['a', 'Z', ' ', '7', '\u00e9', '\u00df', '\u2713', '\u20ac', '\u4e2d', '\u{1F600}', '\u{10348}'];
  const r = randomBytes(Math.max(size, 1));
  const parts = [];
  let len = 0;
  for (let i = 0; ; i++) {
    const c = alphabet[r[i % r.length] % alphabet.length];
    const n = Buffer.byteLength(c);
    if (len + n > size) break;
    parts.push(c);
    len += n;
  }
  parts.push('x'.repeat(size - len));
  const b = Buffer.from(parts.join(''), 'utf8');
  if (b.length !== size) throw new Error(`text of ${b.length} bytes, wanted ${size}`);
  return b;
}

/** Where two buffers first differ (their common length if one is a prefix). */
export function firstDifference(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}
