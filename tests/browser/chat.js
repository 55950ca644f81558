// End-to-end test of examples/chat in headless Chromium: two pages chat
// through `wsx serve --hub --static examples/chat`, survive a server restart
// on the same port, and chat again.
//
//   node tests/browser/chat.js http://127.0.0.1:PORT/
//
// The harness (crates/wsx-cli/tests/chat_browser.rs) owns the server. This
// script tells it what to do on stdout, one command a line:
//   STEP kill      kill the server now (both pages must then show "reconnecting")
//   STEP restart   start it again on the same port
//   OK             every step passed (exit status 0)
// Progress and failures go to stderr; any failed step exits 1.
//
// tests/browser/socketio-chat.js runs the same scenario on
// examples/socketio-chat (the same page, on Socket.IO), through `run`.
'use strict';
const path = require('path');
const { launch } = require('./launch');

const url = process.argv[2];
const STEP_MS = 5000; // one step: a message crossing, presence updating
const RECONNECT_MS = 20000; // server back up to both pages connected (client backoff is at most 2 s)

const script = path.basename(require.main?.filename ?? 'chat.js');
const log = (msg) => process.stderr.write(`${script}: ${msg}\n`);
const command = (cmd) => process.stdout.write(`${cmd}\n`);

async function step(name, fn) {
  try {
    await fn();
    log(`ok - ${name}`);
  } catch (e) {
    const err = new Error(`${name}: ${String(e.message ?? e).split('\n')[0]}`);
    err.step = true;
    throw err;
  }
}

const state = (page) => page.$eval('#status', (el) => el.dataset.state);

function waitState(page, want, timeout = STEP_MS) {
  return page.waitForFunction((s) => document.getElementById('status')?.dataset.state === s, want, { timeout });
}

// Exactly these names in the presence list.
function waitMembers(page, want) {
  return page.waitForFunction(
    (want) => {
      const have = [...document.querySelectorAll('#members li')].map((li) => li.textContent).sort();
      return JSON.stringify(have) === JSON.stringify([...want].sort());
    },
    want,
    { timeout: STEP_MS },
  );
}

function waitMessage(page, name, text) {
  return page.waitForFunction(
    ([name, text]) =>
      [...document.querySelectorAll('#messages li')].some(
        (li) => li.querySelector('.name')?.textContent === name && li.querySelector('.text')?.textContent === text,
      ),
    [name, text],
    { timeout: STEP_MS },
  );
}

async function send(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

// What a page shows, for failure reports.
function snapshot(page) {
  return page
    .evaluate(() => ({
      status: document.getElementById('status')?.dataset.state,
      members: [...document.querySelectorAll('#members li')].map((li) => li.textContent),
      messages: [...document.querySelectorAll('#messages li')].map((li) => li.textContent),
    }))
    .catch((e) => ({ error: String(e) }));
}

async function chat(browser, pageErrors) {
  const open = async (name) => {
    const page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
    page.on('console', (m) => m.type() === 'error' && log(`${name} console: ${m.text()}`));
    await page.goto(url, { timeout: STEP_MS });
    await page.fill('#name', name);
    await page.press('#name', 'Enter');
    return page;
  };
  const ann = await open('ann');
  const bob = await open('bob');
  const both = [ann, bob];
  const pages = { ann, bob };

  await step('both pages connect', () => Promise.all(both.map((p) => waitState(p, 'connected'))));
  await step('presence shows ann and bob on both pages', () =>
    Promise.all(both.map((p) => waitMembers(p, ['ann', 'bob']))));
  await send(ann, 'hello from ann');
  await step("bob's page shows ann's message", () => waitMessage(bob, 'ann', 'hello from ann'));
  await send(bob, 'hi ann, bob here');
  await step("ann's page shows bob's message", () => waitMessage(ann, 'bob', 'hi ann, bob here'));
  await step('each page shows its own message too', () =>
    Promise.all([waitMessage(ann, 'ann', 'hello from ann'), waitMessage(bob, 'bob', 'hi ann, bob here')]));

  command('STEP kill');
  await step('both pages show reconnecting once the server is gone', () =>
    Promise.all(both.map((p) => waitState(p, 'reconnecting'))));
  command('STEP restart');
  await step('both pages reconnect to the restarted server', () =>
    Promise.all(both.map((p) => waitState(p, 'connected', RECONNECT_MS))));
  await step('presence shows ann and bob again', () => Promise.all(both.map((p) => waitMembers(p, ['ann', 'bob']))));
  await send(ann, 'ann after the restart');
  await step("bob's page shows ann's message after the restart", () =>
    waitMessage(bob, 'ann', 'ann after the restart'));
  await send(bob, 'bob after the restart');
  await step("ann's page shows bob's message after the restart", () =>
    waitMessage(ann, 'bob', 'bob after the restart'));
  await step('no message shown twice', async () => {
    for (const [name, page] of Object.entries(pages)) {
      const { messages } = await snapshot(page);
      if (new Set(messages).size !== messages.length) throw new Error(`${name} shows ${JSON.stringify(messages)}`);
    }
  });
  return pages;
}

// The scenario, then `more(pages, browser)` (a script's own steps), then OK.
async function main(more = async () => {}) {
  if (!url) {
    log(`usage: node tests/browser/${script} http://HOST:PORT/`);
    return 2;
  }
  const browser = await launch();
  const pageErrors = [];
  try {
    const pages = await chat(browser, pageErrors);
    await more(pages, browser);
    if (pageErrors.length) throw new Error(`uncaught errors in the pages: ${pageErrors.join('; ')}`);
    command('OK');
    return 0;
  } catch (e) {
    log(`FAIL: ${e.step ? e.message : e.stack}`);
    for (const [i, page] of browser.contexts().flatMap((c) => c.pages()).entries()) {
      log(`page ${i + 1} shows ${JSON.stringify(await snapshot(page))}`);
    }
    for (const err of pageErrors) log(`page error: ${err}`);
    return 1;
  } finally {
    await browser.close().catch(() => {});
  }
}

// Runs the scenario (plus `more`) and exits with its status.
function run(more) {
  main(more).then(
    (code) => process.exit(code),
    (e) => {
      log(`FAIL: ${e.stack ?? e}`);
      process.exit(1);
    },
  );
}

if (require.main === module) run();

module.exports = { run, step, waitState, waitMembers, waitMessage, send, snapshot, log, command, STEP_MS, RECONNECT_MS };
