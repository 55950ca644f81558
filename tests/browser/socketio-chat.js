// End-to-end test of examples/socketio-chat (the official Socket.IO browser
// client, socket.io.min.js) in headless Chromium, through
// `wsx serve --socketio --static DIR` (DIR: the example and the bundle):
// the scenario of tests/browser/chat.js (two pages chat, survive a server
// restart on the same port, chat again), then what the Socket.IO page does
// on its own:
// - a message written while the server is down is sent after the rejoin
//   (once the other page is back in the room too: the relay keeps no history);
// - a closed page says "bye" and leaves the other page's list;
// - a message written alone in the room waits.
//
//   node tests/browser/socketio-chat.js http://127.0.0.1:PORT/
//
// The harness (crates/wsx-cli/tests/socketio_chat_browser.rs) owns the
// server; this script prints the commands of chat.js (STEP kill, STEP
// restart, OK), the kill and restart twice.
'use strict';
const { run, step, waitState, waitMembers, waitMessage, send, command, STEP_MS, RECONNECT_MS } = require('./chat');

run(async ({ ann, bob }) => {
  const both = [ann, bob];
  command('STEP kill');
  await step('both pages show reconnecting again', () => Promise.all(both.map((p) => waitState(p, 'reconnecting'))));
  await send(ann, 'written while the server was down');
  await step("ann's page shows the message it could not send yet", () =>
    waitMessage(ann, 'ann', 'written while the server was down'));
  command('STEP restart');
  await step('both pages reconnect again', () =>
    Promise.all(both.map((p) => waitState(p, 'connected', RECONNECT_MS))));
  await step("bob's page shows what ann wrote while the server was down", () =>
    waitMessage(bob, 'ann', 'written while the server was down'));
  await step('the relay acked it: not dimmed on ann\'s page', () =>
    ann.waitForFunction(() => document.querySelectorAll('#messages li.pending, #messages li.failed').length === 0, null, {
      timeout: STEP_MS,
    }));
  await step('presence shows ann and bob once more', () => Promise.all(both.map((p) => waitMembers(p, ['ann', 'bob']))));
  await bob.close({ runBeforeUnload: true });
  await step("bob closes his page: ann's list shows only ann", () => waitMembers(ann, ['ann']));
  await send(ann, 'anyone there?');
  await step('alone in the room, ann\'s message waits, dimmed', async () => {
    await ann.waitForTimeout(300);
    const pending = await ann.$$eval('#messages li.pending .text', (els) => els.map((e) => e.textContent));
    if (JSON.stringify(pending) !== '["anyone there?"]') throw new Error(`pending: ${JSON.stringify(pending)}`);
  });
});
