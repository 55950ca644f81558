// Launches Debian's headless Chromium through playwright-core with the flags
// this project's machines need (no sandbox as root, no background network:
// the machine's network is closed and Chromium's own connections would be
// refused), in a fresh profile directory. Used by every browser test.
'use strict';
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.WSX_CHROMIUM || '/usr/bin/chromium';

async function launch() {
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
    ],
  });
}

module.exports = { launch, CHROMIUM };
