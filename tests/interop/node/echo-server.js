#!/usr/bin/env node
// Echo server on Node's `ws` for wsx's interop tests
// (crates/wsx/tests/interop.rs).
//
//   node echo-server.js [--compression off|context-takeover|no-context-takeover]
//                       [--max-size BYTES] [--once]
//
// Listens on 127.0.0.1 with an ephemeral port and prints the port alone on
// the first stdout line. Echoes text as text and binary as binary, byte for
// byte. Logs to stderr, one line per event:
//   negotiated-extensions: <Sec-WebSocket-Extensions of the 101 response, empty if none>
//   closed: code=<code> reason=<reason>
// With --once it exits (status 0) after its first connection has closed.
'use strict';

const { parseArgs } = require('node:util');
const { WebSocketServer } = require('ws');
const { perMessageDeflate } = require('./common');

const { values: opts } = parseArgs({
  options: {
    compression: { type: 'string', default: 'context-takeover' },
    'max-size': { type: 'string', default: String(32 << 20) },
    once: { type: 'boolean', default: false }
  }
});

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: perMessageDeflate(opts.compression),
  maxPayload: Number(opts['max-size'])
});

wss.on('listening', () => {
  process.stdout.write(`${wss.address().port}\n`);
});

// The 101 response's headers: the negotiated extensions with parameters.
wss.on('headers', (headers, req) => {
  const ext = headers.find((h) => /^sec-websocket-extensions:/i.test(h));
  req.wsxExtensions = ext ? ext.slice(ext.indexOf(':') + 1).trim() : '';
});

wss.on('connection', (ws, req) => {
  process.stderr.write(`negotiated-extensions: ${req.wsxExtensions}\n`);
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary, compress: true });
  });
  ws.on('error', (err) => {
    process.stderr.write(`error: ${err.message}\n`);
  });
  ws.on('close', (code, reason) => {
    process.stderr.write(`closed: code=${code} reason=${reason}\n`);
    if (opts.once) {
      wss.close();
      process.exitCode = 0;
    }
  });
});
