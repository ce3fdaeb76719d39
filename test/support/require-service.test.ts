/** The rule for a real service that cannot start: skipped loudly on a developer's machine, a failure in CI. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { test } from 'node:test';
import { serviceUnavailable } from './require-service.ts';

/** A stand-in context that records whether the test would have been skipped. */
function context(): { t: TestContext; skipped: () => string | undefined } {
  let skipped: string | undefined;
  const t = { skip: (message?: string) => void (skipped = message ?? '') } as unknown as TestContext;
  return { t, skipped: () => skipped };
}

function withCi<T>(value: string | undefined, fn: () => T): T {
  const before = process.env.CI;
  if (value === undefined) delete process.env.CI;
  else process.env.CI = value;
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env.CI;
    else process.env.CI = before;
  }
}

test('under CI=true an unavailable service fails the test instead of skipping it', () => {
  const { t, skipped } = context();
  assert.throws(() => withCi('true', () => serviceUnavailable(t, 'redis-server', 'not installed')), /SERVICE UNAVAILABLE: redis-server: not installed.*CI=true/);
  assert.equal(skipped(), undefined, 'nothing was skipped');
});

test('outside CI an unavailable service skips the test and names the service', () => {
  const { t, skipped } = context();
  withCi(undefined, () => serviceUnavailable(t, 'Chromium', '/usr/bin/chromium is missing'));
  assert.equal(skipped(), 'SERVICE UNAVAILABLE: Chromium: /usr/bin/chromium is missing');
});

test('.ci/run sets CI=true before the tests, so a CI run can never skip', () => {
  const script = readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8');
  const ci = script.indexOf('export CI=true');
  assert.ok(ci >= 0, '.ci/run exports CI=true');
  assert.ok(ci < script.indexOf('npm test'), 'before npm test');
});
