#!/usr/bin/env node
// wsx's interop matrix with headless Chromium: the browser's own WebSocket,
// in the page tests/browser/interop/ (index.html + interop.js), against the
// `wsx serve --static tests/browser/interop` that served the page (same
// origin). crates/wsx-cli/tests/browser_interop.rs starts the servers and
// runs this script; by hand:
//
//   wsx serve --port 0 --static tests/browser/interop --subprotocol wsx.interop    # prints its address
//   node tests/browser/interop.js --server role=echo,config=deflate,addr=127.0.0.1:PORT
//
// Each --server is role=ROLE,config=NAME,addr=HOST:PORT plus what the role
// needs; the servers are used in the order given:
//
//   echo       wsx serve [--no-compression] --subprotocol wsx.interop:
//              extensions (compression=on|off, from config deflate|plain
//              unless given), echo of text / ArrayBuffer / Blob messages of
//              every size in SIZES, one at a time, then the small ones
//              pipelined; close() with 1000, 4000 + reason and no code;
//              subprotocols selected and refused
//   limit      wsx serve --max-message-size BYTES, limit=BYTES: BYTES echoed,
//              BYTES + 1 closes with 1009
//   term       pid=PID of that server: SIGTERM with a connection open, which
//              must see close 1001, cleanly
//   kill       pid=PID: SIGKILL with a connection open: close 1006, not clean
//   origin     wsx serve --origin https://other.example: the upgrade from
//              this page's origin is refused (403): error, then close 1006
//   keepalive  wsx serve --ping-interval P --idle-timeout I, seconds=N > I:
//              N s without a message from the page (Chromium answers the
//              pings), then an echo on the same connection
//   idle       wsx serve --ping-interval 0 --idle-timeout I, seconds=I: the
//              silent page's connection is closed with 1001 after I s (so
//              keepalive's connection lived by its pongs)
//
// keepalive and idle run alongside the others (they mostly wait).
//
// Prints one line per case, then a summary, and exits 1 if any failed:
//
//   ok   [deflate] echo text 65536 B (14 ms)
//   FAIL [plain] handshake: extensions none (8 ms): extensions "permessage-deflate; ...", expected none
//   browser interop: 76 passed, 1 failed (Chromium 156.0.8078.108)
'use strict';

const { launch } = require('./launch');

const SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20];
/** Sizes also sent all at once, after the one-at-a-time echoes. */
const PIPELINE_MAX = 65536;
const KINDS = ['text', 'arraybuffer', 'blob'];
/** The whole run, as a last resort against a hang. */
const WATCHDOG_MS = Number(process.env.WSX_BROWSER_TIMEOUT_MS || 180000);

function usage(msg) {
  process.stderr.write(`interop.js: ${msg}\nusage: node interop.js --server role=ROLE,config=NAME,addr=HOST:PORT[,pid=PID][,limit=BYTES][,seconds=N] ...\n`);
  process.exit(2);
}

function parseServers(argv) {
  const servers = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] !== '--server' || i + 1 >= argv.length) usage(`unexpected argument ${argv[i]}`);
    const spec = {};
    for (const kv of argv[++i].split(',')) {
      const eq = kv.indexOf('=');
      if (eq < 0) usage(`--server ${argv[i]}: ${kv} is not key=value`);
      spec[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    if (!spec.role || !spec.addr) usage(`--server ${argv[i]}: role and addr are needed`);
    spec.config = spec.config || spec.role;
    servers.push(spec);
  }
  if (servers.length === 0) usage('no --server given');
  return servers;
}

let passed = 0;
let failed = 0;

function report(tag, r) {
  const line = `[${tag}] ${r.name} (${r.ms} ms)`;
  if (r.ok) {
    passed += 1;
    process.stdout.write(`ok   ${line}${r.detail ? `: ${r.detail}` : ''}\n`);
  } else {
    failed += 1;
    process.stdout.write(`FAIL ${line}: ${r.detail}\n`);
  }
}

/** A page loaded from the server, so that its WebSocket is same-origin. */
async function openPage(browser, spec) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => report(spec.config, { name: 'page error', ok: false, ms: 0, detail: String(e) }));
  await page.goto(`http://${spec.addr}/`);
  await page.waitForFunction(() => window.wsxInterop !== undefined, null, { timeout: 10000 });
  return page;
}

const call = (page, fn, arg) => page.evaluate(([f, a]) => window.wsxInterop[f](a), [fn, arg]);

/** Open a connection, stop the server with `signal`, check the close event. */
async function stopServer(page, spec, signal, name, expect) {
  const pid = Number(spec.pid);
  if (!pid) usage(`--server role=${spec.role} needs pid=PID`);
  const held = await call(page, 'hold');
  if (!held.ok) return [{ ...held, name: `${name}: open before the signal` }];
  process.kill(pid, signal);
  return [await call(page, 'awaitClose', { id: held.id, name, expect })];
}

async function runRole(page, spec) {
  switch (spec.role) {
    case 'echo': {
      const compression = spec.compression ? spec.compression === 'on' : spec.config !== 'plain';
      const results = [await call(page, 'handshake', { compression })];
      for (const kind of KINDS) results.push(...(await call(page, 'echo', { kind, sizes: SIZES, pipelineMax: PIPELINE_MAX })));
      results.push(await call(page, 'close', { code: 1000, expect: { code: 1000, reason: '', wasClean: true } }));
      // The close event shows the server's close frame: wsx echoes the code
      // (RFC 6455 §5.5.1) without the reason (Node's ws and Python's
      // websockets echo the reason too).
      const reason = 'done \u2713 \u{1F600}';
      results.push(await call(page, 'close', { code: 4000, reason, expect: { code: 4000, reason: '', wasClean: true } }));
      // No code sent, so the server's close frame has none either: 1005.
      results.push(await call(page, 'close', { expect: { code: 1005, reason: '', wasClean: true } }));
      results.push(await call(page, 'subprotocol', { protocols: ['other', 'wsx.interop'], expect: 'wsx.interop' }));
      results.push(await call(page, 'subprotocol', { protocols: ['other'], expect: null }));
      return results;
    }
    case 'limit': {
      const limit = Number(spec.limit);
      if (!limit) usage('--server role=limit needs limit=BYTES');
      return call(page, 'tooBig', { limit });
    }
    case 'term':
      return stopServer(page, spec, 'SIGTERM', 'server stopped (SIGTERM) -> close 1001', { code: 1001, wasClean: true });
    case 'kill':
      return stopServer(page, spec, 'SIGKILL', 'server killed (SIGKILL) -> close 1006', { code: 1006, wasClean: false });
    case 'origin':
      return [await call(page, 'refused', { name: 'origin refused (403) -> error, close 1006' })];
    case 'idle': {
      const seconds = Number(spec.seconds);
      if (!seconds) usage('--server role=idle needs seconds=IDLE_TIMEOUT');
      return [
        await call(page, 'closedWhenSilent', {
          name: `no pings: closed (1001) after ${seconds} s silent`,
          minMs: seconds * 1000 - 250,
          maxMs: seconds * 1000 + 5000,
          expect: { code: 1001, wasClean: true },
        }),
      ];
    }
    case 'keepalive': {
      const seconds = Number(spec.seconds || 3);
      return [await call(page, 'keepalive', { seconds, name: `server pings: open after ${seconds} s silent, echo works` })];
    }
    default:
      return usage(`unknown role ${spec.role}`);
  }
}

async function runServer(browser, spec) {
  let page;
  try {
    page = await openPage(browser, spec);
    return await runRole(page, spec);
  } catch (e) {
    return [{ name: `${spec.role} on ${spec.addr}`, ok: false, ms: 0, detail: `driver: ${e && e.message ? e.message : e}` }];
  } finally {
    if (page) await page.close().catch(() => {});
  }
}

async function main() {
  const servers = parseServers(process.argv.slice(2));
  const watchdog = setTimeout(() => {
    process.stdout.write(`FAIL [driver] the run took longer than ${WATCHDOG_MS} ms (0 ms): watchdog\n`);
    process.exit(1);
  }, WATCHDOG_MS);
  const browser = await launch();
  try {
    // Keepalive cases wait in silence: they run alongside the others.
    const silent = (s) => s.role === 'keepalive' || s.role === 'idle';
    const background = servers.filter(silent).map((s) => runServer(browser, s).then((rs) => [s, rs]));
    for (const spec of servers.filter((s) => !silent(s))) {
      for (const r of await runServer(browser, spec)) report(spec.config, r);
    }
    for (const [spec, rs] of await Promise.all(background)) for (const r of rs) report(spec.config, r);
  } finally {
    const version = browser.version();
    await browser.close();
    clearTimeout(watchdog);
    process.stdout.write(`browser interop: ${passed} passed, ${failed} failed (Chromium ${version})\n`);
  }
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((e) => {
  process.stdout.write(`FAIL [driver] run (0 ms): ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
