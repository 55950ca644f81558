// Shared by the interop peer scripts: compression settings and the test
// messages (the same list as crates/wsx/tests/interop.rs sends).
'use strict';

const crypto = require('node:crypto');

/** `perMessageDeflate` option of `ws` for a --compression mode. */
function perMessageDeflate(mode) {
  switch (mode) {
    case 'off':
      return false;
    case 'context-takeover':
      // ws's defaults: offer / accept context takeover, but let the other
      // side ask for none (an explicit `false` would refuse that).
      return { threshold: 0 };
    case 'no-context-takeover':
      return { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true };
    default:
      throw new Error(`unknown --compression ${mode} (off | context-takeover | no-context-takeover)`);
  }
}

const SIZES = [0, 1, 64 << 10, 16 << 20];
const SENTENCE = 'wsx interop: the quick brown fox jumps over the lazy dog, h\u00e9las \u2713 \u20ac 0123456789\n';
const ALPHABET = ['a', 'b', 'Z', ' ', '7', '\u00e9', '\u00df', '\u2713', '\u20ac', '\u4e2d', '\u{1F600}', '\u{10348}'];

/** Text of exactly `size` UTF-8 bytes: compressible (a repeated sentence) or not (random characters). */
function text(size, random) {
  const parts = [];
  let len = 0;
  if (random) {
    const r = crypto.randomBytes(size);
    for (let i = 0; len < size; i++) {
      const c = ALPHABET[r[i % size] % ALPHABET.length];
      const n = Buffer.byteLength(c);
      if (len + n > size) break;
      parts.push(c);
      len += n;
    }
  } else {
    const n = Buffer.byteLength(SENTENCE);
    const reps = Math.floor(size / n);
    parts.push(SENTENCE.repeat(reps));
    len = reps * n;
    for (const c of SENTENCE) {
      const m = Buffer.byteLength(c);
      if (len + m > size) break;
      parts.push(c);
      len += m;
    }
  }
  parts.push('x'.repeat(size - len));
  const b = Buffer.from(parts.join(''), 'utf8');
  if (b.length !== size) throw new Error(`text of ${b.length} bytes, wanted ${size}`);
  return b;
}

/** Binary of `size` bytes: compressible (a counter pattern) or pseudo-random. */
function binary(size, random) {
  if (random) return crypto.randomBytes(size);
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i >> 4) & 0xff;
  return b;
}

/**
 * The messages of one test run, in order: for each size a compressible
 * text and a random binary message, then a random text and a compressible
 * binary message of 64 KiB. Each is { binary, data }.
 */
function messages() {
  const out = [];
  for (const size of SIZES) {
    out.push({ binary: false, data: text(size, false) });
    out.push({ binary: true, data: binary(size, true) });
  }
  out.push({ binary: false, data: text(64 << 10, true) });
  out.push({ binary: true, data: binary(64 << 10, false) });
  return out;
}

module.exports = { perMessageDeflate, messages };
