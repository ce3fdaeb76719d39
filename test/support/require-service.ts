/**
 * When a real service (redis-server, PostgreSQL, dockerd, Chromium, network
 * namespaces) cannot start, a test says so loudly. Locally it is then skipped;
 * under CI=true it fails, so a broken machine never passes as green.
 */
import type { TestContext } from 'node:test';

export function serviceUnavailable(t: TestContext, what: string, why: string): void {
  const line = `SERVICE UNAVAILABLE: ${what}: ${why}`;
  console.error(`\n${'!'.repeat(line.length)}\n${line}\n${'!'.repeat(line.length)}\n`);
  if (process.env.CI === 'true') throw new Error(`${line} (CI=true: a test that cannot run fails)`);
  t.skip(line);
}
