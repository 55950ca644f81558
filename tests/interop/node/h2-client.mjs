#!/usr/bin/env node
// A WebSocket client over HTTP/2 (RFC 8441) on Node's built-in `http2`,
// with the framing of h2-ws.mjs, for wsx's server in
// crates/wsx/tests/interop_http2.rs.
//
//   node h2-client.mjs --port PORT --ca CA.pem [--host localhost]
//
// Connects to https://HOST:PORT (ALPN h2 only, the server's certificate
// checked against CA.pem), waits for the server's SETTINGS to allow
// extended CONNECT, and runs its cases on that one HTTP/2 connection,
// every WebSocket an extended CONNECT stream (:protocol websocket,
// sec-websocket-version 13) that must be answered 200 without
// Sec-WebSocket-Accept:
//
//   echo       text (1- to 4-byte UTF-8) and binary (random) of 0, 1, 125,
//              126, 65535, 65536 B and 1 MiB, one socket, each echo compared
//              byte for byte with its type
//   fragments  a text message in 3 fragments with a ping between them: the
//              pong, then the whole message
//   together   4 sockets at once, 16 messages each, interleaved
//   close      close(4001, "bye"): the server's close frame has 4001, and
//              the server ends the stream
//   refused    an extended CONNECT with :protocol chat (501), a CONNECT
//              without :protocol (405), sec-websocket-version 8 (426 with
//              sec-websocket-version: 13), each on its stream alone: a
//              WebSocket opened after them on the same connection echoes
//
// Prints one line per case (`ok NAME: detail` or `FAIL NAME: why`), then
// `opened N` (the WebSockets the server answered with 200) and exits 0 only
// when every case passed.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { parseArgs } from 'node:util';
import { firstDifference, randomText, WsConn } from './h2-ws.mjs';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string' },
    ca: { type: 'string' },
    host: { type: 'string', default: 'localhost' },
  },
});
if (!opts.port || !opts.ca) {
  process.stderr.write('usage: node h2-client.mjs --port PORT --ca CA.pem [--host localhost]\n');
  process.exit(2);
}
const authority = `${opts.host}:${opts.port}`;
/** Longest wait for one event. */
const WAIT_MS = 20000;

class Failure extends Error {}
const fail = (msg) => {
  throw new Failure(msg);
};

function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

let failed = 0;
let opened = 0;

async function run(name, fn) {
  try {
    const detail = await fn();
    process.stdout.write(`ok   ${name}${detail ? `: ${detail}` : ''}\n`);
  } catch (e) {
    failed += 1;
    process.stdout.write(`FAIL ${name}: ${e instanceof Failure ? e.message : (e && e.stack) || e}\n`);
  }
}

/** The session, once the server's SETTINGS allow extended CONNECT (RFC 8441 §3). */
async function connect() {
  const session = http2.connect(`https://${authority}`, {
    ca: readFileSync(opts.ca),
    servername: opts.host,
    ALPNProtocols: ['h2'],
  });
  session.on('error', (e) => process.stdout.write(`FAIL session error: ${e.message}\n`));
  await within(
    new Promise((resolve, reject) => {
      session.once('remoteSettings', resolve);
      session.once('error', reject);
    }),
    "the server's SETTINGS",
  );
  if (session.alpnProtocol !== 'h2') fail(`ALPN chose ${session.alpnProtocol}, not h2`);
  if (session.remoteSettings.enableConnectProtocol !== true) {
    fail(`SETTINGS_ENABLE_CONNECT_PROTOCOL not set: ${JSON.stringify(session.remoteSettings)}`);
  }
  return session;
}

/** A stream for `headers`, and its response headers (or how it failed before them). */
async function request(session, headers) {
  const stream = session.request(headers, { endStream: false });
  const response = await within(
    new Promise((resolve, reject) => {
      stream.once('response', resolve);
      stream.once('error', reject);
      stream.once('close', () => reject(new Failure(`the stream closed before a response (code ${stream.rstCode})`)));
    }),
    'the response headers',
  );
  return { stream, response };
}

/** An extended CONNECT for a WebSocket at `path`: answered 200, as RFC 8441 §5 says. */
async function openWs(session, path) {
  const { stream, response } = await request(session, {
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':scheme': 'https',
    ':path': path,
    ':authority': authority,
    'sec-websocket-version': '13',
  });
  if (response[':status'] !== 200) fail(`${path}: status ${response[':status']}, expected 200`);
  if (response['sec-websocket-accept'] !== undefined) fail(`${path}: a sec-websocket-accept in the 200 response`);
  opened += 1;
  return new WsConn(stream, 'client');
}

async function expectEcho(ws, type, data, what) {
  const e = await within(ws.next(), `the echo of ${what}`);
  if (e.type !== type) fail(`${what}: got ${e.type}${e.data ? ` of ${e.data.length} bytes` : ''} ${e.error || ''}${e.code ? ` code ${e.code}` : ''}`);
  if (!e.data.equals(data)) fail(`${what}: echo of ${e.data.length} bytes differs from byte ${firstDifference(data, e.data)}`);
}

/** Close with `code` and wait for the server's close frame and the end of the stream. */
async function closeWith(ws, code, reason) {
  ws.close(code, reason);
  const e = await within(ws.next(), "the server's close frame");
  if (e.type !== 'close') fail(`expected the server's close frame, got ${e.type} ${e.error || ''}`);
  const end = await within(ws.next(), 'the end of the stream');
  if (end.type !== 'end') fail(`expected the end of the stream, got ${end.type} ${end.error || ''}`);
  return e;
}

const SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20];

const session = await connect().catch((e) => {
  process.stdout.write(`FAIL connect: ${e.message}\n`);
  process.exit(1);
});

await run('echo', async () => {
  const ws = await openWs(session, '/echo');
  for (const size of SIZES) {
    const text = randomText(size);
    ws.send('text', text);
    await expectEcho(ws, 'text', text, `text of ${size} B`);
    const bin = randomBytes(size);
    ws.send('binary', bin);
    await expectEcho(ws, 'binary', bin, `binary of ${size} B`);
  }
  await closeWith(ws, 1000, '');
  return `text and binary of ${SIZES.join(', ')} B`;
});

await run('fragments', async () => {
  const ws = await openWs(session, '/fragments');
  const text = randomText(3000);
  const ping = Buffer.from('between fragments');
  ws.send('text', text, { fragments: 3, between: () => ws.ping(ping) });
  await expectEcho(ws, 'text', text, 'a text message of 3 fragments');
  if (!ws.pongs.some((p) => p.equals(ping))) fail('no pong with the ping payload');
  await closeWith(ws, 1000, '');
  return 'pong, then the whole message';
});

await run('together', async () => {
  const sockets = await Promise.all([0, 1, 2, 3].map((i) => openWs(session, `/together/${i}`)));
  await Promise.all(
    sockets.map(async (ws, i) => {
      for (let k = 0; k < 16; k++) {
        const bin = k % 2 === 1;
        const data = bin ? randomBytes(1000 * (i + 1) + k) : randomText(100 * k + i);
        ws.send(bin ? 'binary' : 'text', data);
        await expectEcho(ws, bin ? 'binary' : 'text', data, `socket ${i} message ${k}`);
      }
    }),
  );
  await Promise.all(sockets.map((ws) => closeWith(ws, 1000, '')));
  return '4 sockets, 16 messages each, on one connection';
});

await run('close', async () => {
  const ws = await openWs(session, '/close');
  ws.send('text', Buffer.from('before close'));
  await expectEcho(ws, 'text', Buffer.from('before close'), 'before close');
  const c = await closeWith(ws, 4001, 'bye');
  if (c.code !== 4001) fail(`the server's close frame has ${c.code}, expected 4001`);
  return `server's close frame: ${c.code} ${JSON.stringify(c.reason)}; stream ended`;
});

await run('refused', async () => {
  const ext = (more) => ({
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':scheme': 'https',
    ':path': '/refused',
    ':authority': authority,
    'sec-websocket-version': '13',
    ...more,
  });
  const answers = [];
  for (const [what, headers, want] of [
    [':protocol chat', ext({ ':protocol': 'chat' }), 501],
    ['CONNECT without :protocol', { ':method': 'CONNECT', ':authority': authority }, 405],
    ['sec-websocket-version 8', ext({ 'sec-websocket-version': '8' }), 426],
  ]) {
    const { stream, response } = await request(session, headers);
    const status = response[':status'];
    if (status !== want) fail(`${what}: status ${status}, expected ${want}`);
    if (want === 426 && !/\b13\b/.test(response['sec-websocket-version'] ?? '')) {
      fail(`${what}: 426 with sec-websocket-version ${JSON.stringify(response['sec-websocket-version'])}`);
    }
    stream.close();
    answers.push(`${what} -> ${status}`);
  }
  const ws = await openWs(session, '/after-refusals');
  ws.send('text', Buffer.from('still here'));
  await expectEcho(ws, 'text', Buffer.from('still here'), 'after the refusals');
  await closeWith(ws, 1000, '');
  return `${answers.join(', ')}; the connection still serves`;
});

process.stdout.write(`opened ${opened}\n`);
session.close();
process.exitCode = failed ? 1 : 0;
