#!/usr/bin/env node
// A WebSocket echo server over HTTP/2 (RFC 8441) on Node's built-in
// `http2`, with the framing of h2-ws.mjs, for wsx's client in
// crates/wsx/tests/interop_http2.rs.
//
//   node h2-server.mjs --cert CERT.pem --key KEY.pem [--no-connect-protocol]
//
// Listens on 127.0.0.1 with an ephemeral port (TLS, ALPN h2 and http/1.1)
// and prints the port alone on the first stdout line. On HTTP/2 it sends
// SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 unless --no-connect-protocol, and
// answers an extended CONNECT with :protocol websocket and
// sec-websocket-version 13 with 200, then echoes every message with its
// type (unmasked server frames; messages of 64 KiB and more in 4
// fragments) and answers the close frame with its code. Anything else on
// HTTP/2 gets 400. A client that chose http/1.1 by ALPN gets the same
// echo after an RFC 6455 upgrade (101), so that a client can fall back.
//
// Logs to stderr, one line per event:
//   session alpn=h2
//   connect method=CONNECT protocol=websocket scheme=https path=/p authority=localhost:PORT version=13 key=absent
//   h1-upgrade path=/p version=13
//   closed code=4001 reason=
//   error <what>
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { parseArgs } from 'node:util';
import { WsConn } from './h2-ws.mjs';

const { values: opts } = parseArgs({
  options: {
    cert: { type: 'string' },
    key: { type: 'string' },
    'no-connect-protocol': { type: 'boolean', default: false },
  },
});
if (!opts.cert || !opts.key) {
  process.stderr.write('usage: node h2-server.mjs --cert CERT.pem --key KEY.pem [--no-connect-protocol]\n');
  process.exit(2);
}

const log = (line) => process.stderr.write(`${line}\n`);

/** Echo every message of `ws` until its close frame or its end. */
async function echo(ws) {
  for (;;) {
    const e = await ws.next();
    if (e.type === 'text' || e.type === 'binary') {
      ws.send(e.type, e.data, { fragments: e.data.length >= 65536 ? 4 : 1 });
    } else if (e.type === 'close') {
      log(`closed code=${e.code} reason=${e.reason}`);
      return;
    } else {
      log(`error the connection ended without a close frame (${e.type}${e.error ? `: ${e.error}` : ''})`);
      return;
    }
  }
}

const server = http2.createSecureServer({
  cert: readFileSync(opts.cert),
  key: readFileSync(opts.key),
  allowHTTP1: true,
  settings: { enableConnectProtocol: !opts['no-connect-protocol'] },
});

server.on('session', (session) => {
  log(`session alpn=${session.alpnProtocol}`);
  session.on('error', (e) => log(`error session: ${e.message}`));
});

server.on('stream', (stream, headers) => {
  const h = (name) => headers[name] ?? '';
  log(
    `connect method=${h(':method')} protocol=${h(':protocol')} scheme=${h(':scheme')} path=${h(':path')} ` +
      `authority=${h(':authority')} version=${h('sec-websocket-version')} key=${headers['sec-websocket-key'] ? 'present' : 'absent'}`,
  );
  stream.on('error', (e) => log(`error stream: ${e.message}`));
  if (h(':method') !== 'CONNECT' || h(':protocol') !== 'websocket' || h('sec-websocket-version') !== '13') {
    stream.respond({ ':status': 400 }, { endStream: true });
    return;
  }
  // RFC 8441 §5: 200, no Sec-WebSocket-Accept.
  stream.respond({ ':status': 200 });
  echo(new WsConn(stream, 'server'));
});

// HTTP/1.1 by ALPN: the RFC 6455 handshake, then the same echo.
server.on('upgrade', (req, socket, head) => {
  const key = req.headers['sec-websocket-key'];
  log(`h1-upgrade path=${req.url} version=${req.headers['sec-websocket-version'] ?? ''}`);
  socket.on('error', (e) => log(`error socket: ${e.message}`));
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket' || !key || req.headers['sec-websocket-version'] !== '13') {
    socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`);
  const ws = new WsConn(socket, 'server');
  if (head && head.length) ws.onData(head);
  echo(ws);
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});
