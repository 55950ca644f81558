// Launches Debian's headless Chromium through playwright-core with the flags
// this project's machines need (no sandbox as root, no background network:
// the machine's network is closed and Chromium's own connections would be
// refused), in a fresh profile directory, plus `extraArgs` (a test's own
// flags, e.g. which certificate to trust). Used by every browser test.
'use strict';
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.WSX_CHROMIUM || '/usr/bin/chromium';

async function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
      ...extraArgs,
    ],
  });
}

module.exports = { launch, CHROMIUM };
