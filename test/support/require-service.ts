/**
 * When a real service (redis-server, PostgreSQL, dockerd, Chromium, network
 * namespaces) cannot start, a test says so loudly. On a developer's machine it
 * is then skipped, so the rest of the suite still runs without Docker or
 * Chromium; under CI=true (which .ci/run always sets) it fails, so a broken CI
 * machine never passes as green. This is the suite's only skip.
 */
import type { TestContext } from 'node:test';

export function serviceUnavailable(t: TestContext, what: string, why: string): void {
  const line = `SERVICE UNAVAILABLE: ${what}: ${why}`;
  console.error(`\n${'!'.repeat(line.length)}\n${line}\n${'!'.repeat(line.length)}\n`);
  if (process.env.CI === 'true') throw new Error(`${line} (CI=true: a test that cannot run fails)`);
  t.skip(line);
}
