#!/usr/bin/env node
// Client on Node's `ws` for wsx's interop tests (crates/wsx/tests/interop.rs).
//
//   node client.js --url ws://127.0.0.1:PORT/ [--compression off|context-takeover|no-context-takeover]
//                  [--max-size BYTES]
//
// Sends the test messages of common.js one at a time, checks that each
// echo comes back byte for byte with the same type, then closes with 1000.
// Prints to stdout:
//   negotiated-extensions: <Sec-WebSocket-Extensions of the 101 response, empty if none>
//   ok <n> messages            (or "mismatch: ..." / "error: ...")
// Exits 0 only when every echo matched and the close was clean.
'use strict';

const { parseArgs } = require('node:util');
const WebSocket = require('ws');
const { perMessageDeflate, messages } = require('./common');

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    compression: { type: 'string', default: 'context-takeover' },
    'max-size': { type: 'string', default: String(32 << 20) }
  }
});
if (!opts.url) {
  process.stderr.write('usage: node client.js --url ws://HOST:PORT/ [--compression MODE]\n');
  process.exit(2);
}

function fail(msg) {
  process.stdout.write(`${msg}\n`);
  process.exit(1);
}

const msgs = messages();
const ws = new WebSocket(opts.url, {
  perMessageDeflate: perMessageDeflate(opts.compression),
  maxPayload: Number(opts['max-size'])
});
let next = 0;

function sendNext() {
  if (next === msgs.length) {
    ws.close(1000, 'done');
    return;
  }
  const m = msgs[next];
  ws.send(m.data, { binary: m.binary, compress: true });
}

ws.on('upgrade', (res) => {
  process.stdout.write(`negotiated-extensions: ${res.headers['sec-websocket-extensions'] || ''}\n`);
});
ws.on('open', sendNext);
ws.on('message', (data, isBinary) => {
  const m = msgs[next];
  if (m === undefined) fail(`mismatch: unexpected message ${next} (${data.length} bytes)`);
  const what = `message ${next} (${m.binary ? 'binary' : 'text'}, ${m.data.length} bytes)`;
  if (isBinary !== m.binary) fail(`mismatch: ${what} came back as ${isBinary ? 'binary' : 'text'}`);
  if (!m.data.equals(data)) fail(`mismatch: ${what} came back different (${data.length} bytes)`);
  next += 1;
  sendNext();
});
ws.on('error', (err) => fail(`error: ${err.message}`));
ws.on('close', (code, reason) => {
  if (next !== msgs.length) fail(`error: closed with ${code} ${reason} after ${next} of ${msgs.length} messages`);
  if (code !== 1000) fail(`error: closed with ${code} ${reason}`);
  process.stdout.write(`ok ${msgs.length} messages\n`);
  process.exitCode = 0;
});
