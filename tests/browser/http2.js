#!/usr/bin/env node
// wsx's WebSockets over HTTP/2 (RFC 8441) with headless Chromium: the page
// tests/browser/http2/ (index.html + http2.js), loaded over https from the
// `wsx serve --tls-cert C --tls-key K --static tests/browser/http2` it then
// opens its WebSockets to. crates/wsx-cli/tests/browser_http2.rs makes the
// certificate, starts the server and runs this script; by hand:
//
//   wsx serve --port 0 --tls-cert cert.pem --tls-key key.pem --static tests/browser/http2
//   node tests/browser/http2.js --url https://127.0.0.1:PORT/ --cert cert.pem
//
// Chromium trusts the certificate by its public key alone
// (--ignore-certificate-errors-spki-list with the SHA-256 of its SPKI),
// so the page is a secure context on a real HTTP/2 connection. Cases:
//
//   page       the page and its script came over h2
//   together   --sockets N sockets at once, interleaved echoes (1 MiB on
//              one of them), held open while:
//              - the page fetches /metrics (over h2, printed as
//                `metrics-page {json}`), and
//              - with --hold, the script prints `hold N` and waits for a
//                line on stdin (the test reads /metrics itself meanwhile)
//              then each closes with its own code (4002 + i)
//   echo       text and ArrayBuffer of 0 B to 16 MiB, one socket per kind
//   close      close(4001, "bye") by the page: close event 4001, clean
//
// Prints one line per case (`ok   NAME (MS ms): detail` or `FAIL ...`),
// then `opened N` (the WebSockets the page created) and a summary, and
// exits 1 if any case failed.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const readline = require('node:readline');
const { parseArgs } = require('node:util');
const { launch } = require('./launch');

const SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20];
const WATCHDOG_MS = Number(process.env.WSX_BROWSER_TIMEOUT_MS || 180000);

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    cert: { type: 'string' },
    sockets: { type: 'string', default: '6' },
    hold: { type: 'boolean', default: false },
  },
});
if (!opts.url || !opts.cert) {
  process.stderr.write('usage: node http2.js --url https://HOST:PORT/ --cert CERT.pem [--sockets N] [--hold]\n');
  process.exit(2);
}

/** base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo, as Chromium's SPKI list wants it. */
function spkiHash(pemFile) {
  const cert = new crypto.X509Certificate(fs.readFileSync(pemFile));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(spki).digest('base64');
}

let passed = 0;
let failed = 0;

function report(r) {
  const line = `${r.name} (${r.ms} ms)`;
  if (r.ok) {
    passed += 1;
    process.stdout.write(`ok   ${line}${r.detail ? `: ${r.detail}` : ''}\n`);
  } else {
    failed += 1;
    process.stdout.write(`FAIL ${line}: ${r.detail}\n`);
  }
}

const call = (page, fn, arg) => page.evaluate(([f, a]) => window.wsxHttp2[f](a), [fn, arg]);

/** The next line on stdin (null at its end); stdin is let go then, so that it keeps nothing alive. */
function stdinLine() {
  const rl = readline.createInterface({ input: process.stdin });
  return new Promise((resolve) => {
    const done = (line) => {
      resolve(line);
      rl.close();
      process.stdin.destroy();
    };
    rl.once('line', done);
    rl.once('close', () => done(null));
  });
}

async function run(page) {
  report(await call(page, 'page'));
  // First, while no closed WebSocket is still counted by the server: after
  // the closing handshake Chromium neither ends nor resets its side of the
  // stream, so wsx holds a closed socket's stream until its close timeout.
  const n = Number(opts.sockets);
  const together = await call(page, 'together', { n });
  report(together);
  if (together.ok) {
    const m = await call(page, 'metrics');
    process.stdout.write(`metrics-page ${JSON.stringify(m)}\n`);
    if (opts.hold) {
      process.stdout.write(`hold ${n}\n`);
      const go = await stdinLine();
      if (go !== 'go') report({ name: 'hold', ok: false, ms: 0, detail: `stdin said ${JSON.stringify(go)}, not go` });
    }
    report(await call(page, 'release'));
  }
  for (const kind of ['text', 'arraybuffer']) for (const r of await call(page, 'echo', { kind, sizes: SIZES })) report(r);
  report(await call(page, 'close', { code: 4001, reason: 'bye' }));
}

async function main() {
  const watchdog = setTimeout(() => {
    process.stdout.write(`FAIL [driver] the run took longer than ${WATCHDOG_MS} ms (0 ms): watchdog\n`);
    process.exit(1);
  }, WATCHDOG_MS);
  const browser = await launch([`--ignore-certificate-errors-spki-list=${spkiHash(opts.cert)}`]);
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => report({ name: 'page error', ok: false, ms: 0, detail: String(e) }));
    await page.goto(opts.url);
    await page.waitForFunction(() => window.wsxHttp2 !== undefined, null, { timeout: 10000 });
    await run(page);
    process.stdout.write(`opened ${await call(page, 'opened')}\n`);
  } finally {
    const version = browser.version();
    await browser.close();
    clearTimeout(watchdog);
    process.stdout.write(`browser http2: ${passed} passed, ${failed} failed (Chromium ${version})\n`);
  }
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((e) => {
  process.stdout.write(`FAIL [driver] run (0 ms): ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
