/** Headless Debian Chromium driven by playwright-core, closed at the end of the test (or of the suite). */
import { existsSync } from 'node:fs';
import { after, type TestContext } from 'node:test';
import { type Browser, chromium } from 'playwright-core';
import { serviceUnavailable } from './require-service.ts';

/** A new Chromium, or why none could start. playwright gives every launch a fresh temporary profile of its own. */
async function launch(): Promise<Browser | Error> {
  if (!existsSync('/usr/bin/chromium')) return new Error('/usr/bin/chromium is missing (apt-get install chromium)');
  try {
    return await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
    });
  } catch (err) {
    return err as Error;
  }
}

function usable(t: TestContext, browser: Browser | Error): Browser | undefined {
  if (!(browser instanceof Error)) return browser;
  serviceUnavailable(t, 'Chromium', browser.message);
  return undefined;
}

export async function launchChromium(t: TestContext): Promise<Browser | undefined> {
  const browser = usable(t, await launch());
  t.after(() => browser?.close());
  return browser;
}

/**
 * One Chromium for every test of the suite this is called in (a `describe`, or a file at its top level), launched by the
 * first test that asks and closed after the suite: a launch takes seconds on a loaded machine. Each
 * test keeps to a browser context of its own (`browser.newContext()`, closed in its `t.after`).
 */
export function chromiumForSuite(): (t: TestContext) => Promise<Browser | undefined> {
  let launched: Promise<Browser | Error> | undefined;
  after(async () => {
    const browser = await launched;
    if (browser && !(browser instanceof Error)) await browser.close();
  });
  return async (t) => usable(t, await (launched ??= launch()));
}
