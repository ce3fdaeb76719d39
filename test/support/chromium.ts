/** Headless Debian Chromium driven by playwright-core, closed at the end of the test. */
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { type Browser, chromium } from 'playwright-core';
import { serviceUnavailable } from './require-service.ts';

export async function launchChromium(t: TestContext): Promise<Browser | undefined> {
  if (!existsSync('/usr/bin/chromium')) {
    serviceUnavailable(t, 'Chromium', '/usr/bin/chromium is missing (apt-get install chromium)');
    return undefined;
  }
  try {
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
    });
    // playwright gives every launch a fresh temporary profile of its own.
    t.after(() => browser.close());
    return browser;
  } catch (err) {
    serviceUnavailable(t, 'Chromium', (err as Error).message);
    return undefined;
  }
}
