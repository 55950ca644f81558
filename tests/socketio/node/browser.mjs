#!/usr/bin/env node
// The official Socket.IO client's browser bundle (socket.io-client's
// dist/socket.io.min.js, from tests/socketio/node/node_modules) in headless
// Chromium, against a server that serves tests/socketio/CONTRACT.md: the
// same checks as client.mjs (checks.mjs), with binary data as ArrayBuffers.
//
//   node tests/socketio/node/browser.mjs http://127.0.0.1:PORT
//        [--mode upgrade|websocket|polling]...   (default: all three)
//        [--check NAME]...                       (default: every check)
//
// The page (tests/socketio/browser/index.html), the bundle and checks.mjs
// are served to the page at the server's own origin, under /__wsx-sio/,
// by Chromium's request interception (Playwright's page.route), which is
// removed once the page has loaded: the server under test serves nothing
// but Socket.IO, and polling stays same-origin (no CORS in the contract).
// The two-node check (--second) is left to the Node and Python clients:
// a page on one node would reach the other cross-origin.
//
// Needs scripts/install-socketio and scripts/install-browser (Chromium,
// playwright-core in tests/browser). Output as client.mjs's:
//
//   {"client":"chromium","mode":"polling","check":"binary","ok":true,"ms":61,"detail":"attachments echoed"}
//   socket.io interop (chromium, socket.io-client 4.8.4 dist/socket.io.min.js): 27 passed, 0 failed
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { parseArgs } from './checks.mjs';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const { launch } = require('../../browser/launch.js');
const WATCHDOG_MS = Number(process.env.WSX_SIO_TIMEOUT_MS || 60000);
const PREFIX = '/__wsx-sio/';

const { url, modes, only } = parseArgs('browser.mjs', process.argv.slice(2), { twoNodes: false });

const FILES = {
  'index.html': [join(here, '../browser/index.html'), 'text/html; charset=utf-8'],
  'socket.io.min.js': [join(here, 'node_modules/socket.io-client/dist/socket.io.min.js'), 'text/javascript; charset=utf-8'],
  'checks.mjs': [join(here, 'checks.mjs'), 'text/javascript; charset=utf-8'],
};
const version = require('socket.io-client/package.json').version;

let passed = 0;
let failed = 0;
const line = (r) => process.stdout.write(`${JSON.stringify({ client: 'chromium', ...r })}\n`);
function report(r) {
  if (r.ok) passed += 1;
  else failed += 1;
  line(r);
}

// Chromium's Local Network Access checks block the page's WebSocket to
// 127.0.0.1: a page fulfilled by request interception has no address of
// its own, so it counts as public.
const browser = await launch(['--disable-features=LocalNetworkAccessChecks']);
const watchdog = setTimeout(async () => {
  report({ check: 'watchdog', ok: false, detail: `the run took over ${WATCHDOG_MS} ms` });
  process.stdout.write(`socket.io interop (chromium): ${passed} passed, ${failed} failed\n`);
  await browser.close().catch(() => {});
  process.exit(1);
}, WATCHDOG_MS);

try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => report({ check: 'page error', ok: false, ms: 0, detail: String(e) }));
  page.on('console', (m) => {
    if (m.type() === 'error') process.stderr.write(`browser console: ${m.text()}\n`);
  });
  await page.route(`${url}${PREFIX}**`, (route) => {
    const name = new URL(route.request().url()).pathname.slice(PREFIX.length);
    const file = FILES[name];
    if (!file) return route.fulfill({ status: 404, body: 'not found' });
    return route.fulfill({ status: 200, contentType: file[1], body: readFileSync(file[0]) });
  });
  await page.goto(`${url}${PREFIX}index.html`);
  await page.waitForFunction(() => window.sioReady === true, null, { timeout: 10000 });
  await page.unrouteAll();
  const browserVersion = browser.version();
  // Each result as it comes, not at the end of the mode.
  await page.exposeFunction('sioReport', (r) => report(r));
  for (const mode of modes) {
    // Long-polling sockets each hold one of the 6 connections Chromium opens
    // to a server: two checks at a time (at most 4 sockets) while polling.
    const concurrency = mode === 'websocket' ? Infinity : 2;
    await page.evaluate((arg) => window.sioRun(arg), { url, mode, only, concurrency });
  }
  process.stdout.write(
    `socket.io interop (chromium ${browserVersion}, socket.io-client ${version} dist/socket.io.min.js): ${passed} passed, ${failed} failed\n`,
  );
} catch (e) {
  report({ check: 'browser', ok: false, detail: String(e && e.stack ? e.stack : e) });
  process.stdout.write(`socket.io interop (chromium): ${passed} passed, ${failed} failed\n`);
} finally {
  clearTimeout(watchdog);
  await browser.close().catch(() => {});
}
process.exit(failed === 0 && passed > 0 ? 0 : 1);
