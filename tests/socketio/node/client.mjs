#!/usr/bin/env node
// The official Socket.IO client for Node (npm `socket.io-client`, pinned in
// package-lock.json) against a server that serves tests/socketio/CONTRACT.md.
//
//   node tests/socketio/node/client.mjs http://127.0.0.1:PORT
//        [--mode upgrade|websocket|polling]...   (default: all three)
//        [--check NAME]...                       (default: every check)
//        [--second http://127.0.0.1:PORT2]       (adds the two-node check)
//
// Prints one JSON line per check and mode, then a summary line, and exits 0
// only if every check passed (1 if one failed, 2 on a usage error):
//
//   {"client":"node","mode":"websocket","check":"binary","ok":true,"ms":41,"detail":"attachments echoed"}
//   socket.io interop (node socket.io-client 4.8.4): 27 passed, 0 failed
import { createRequire } from 'node:module';
import { io, Manager } from 'socket.io-client';
import { runChecks, parseArgs } from './checks.mjs';

const require = createRequire(import.meta.url);
/** The whole run, as a last resort against a hang. */
const WATCHDOG_MS = Number(process.env.WSX_SIO_TIMEOUT_MS || 60000);

const { url, second, modes, only } = parseArgs('client.mjs', process.argv.slice(2), { twoNodes: true });

const version = require('socket.io-client/package.json').version;
let passed = 0;
let failed = 0;

function report(r) {
  if (r.ok) passed += 1;
  else failed += 1;
  process.stdout.write(`${JSON.stringify({ client: 'node', ...r })}\n`);
}

const watchdog = setTimeout(() => {
  process.stdout.write(`${JSON.stringify({ client: 'node', check: 'watchdog', ok: false, detail: `the run took over ${WATCHDOG_MS} ms` })}\n`);
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

// Binary as Node's Buffer (what a Node application sends).
const bin = (u8) => Buffer.from(u8);

for (const mode of modes) {
  await runChecks({ lib: { io, Manager }, url, second, mode, bin, report, only });
}
process.stdout.write(`socket.io interop (node socket.io-client ${version}): ${passed} passed, ${failed} failed\n`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
