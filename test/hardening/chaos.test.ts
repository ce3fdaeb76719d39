/**
 * Chaos under a bounded load of idempotent GETs: kill -9 a backend, SIGSTOP one
 * (then SIGCONT), reload a broken config then a good one, remove a server
 * through the control plane. Zero failed requests allowed: tuned by config
 * (health interval, per-try timeout, retries), never by loosening the assertion.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { delay, get, startBackends, startInProcess, testAgent } from '../support/velocity.ts';

test('kill -9, SIGSTOP/SIGCONT, a broken then a good reload and a server removal during load: zero failed idempotent requests', async (t) => {
  const backends = await startBackends(t, 4);
  const [b1, b2, b3, b4] = backends as [(typeof backends)[0], (typeof backends)[0], (typeof backends)[0], (typeof backends)[0]];
  const yaml = (servers: string[]) => `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    health: { type: http, path: /health, interval: 500ms, timeout: 1s, unhealthy_threshold: 2, healthy_threshold: 1 }
    timeouts: { connect: 500ms }
    retries: { attempts: 4, per_try_timeout: 1s, budget: 1, min_retries_per_second: 1000, backoff: { base: 5ms, max: 20ms } }
    passive_health: { consecutive_failures: 2, max_ejected_percent: 50 }
    servers: [${servers.join(', ')}]
`;
  const velocity = await startInProcess(t, yaml(backends.map((b) => b.url)));
  const url = `http://127.0.0.1:${velocity.address.port}/`;
  const agent = testAgent(t);
  const failures: string[] = [];
  const events: string[] = [];
  let sent = 0;
  let stop = false;
  const deadline = Date.now() + 30_000;
  const loadLoop = async () => {
    while (!stop && sent < 20_000 && Date.now() < deadline) {
      sent++;
      try {
        const r = await get(agent, url);
        if (r.status !== 200) failures.push(`${r.status} ${String(r.headers['x-velocity-error'])} after ${events.at(-1) ?? 'start'}`);
      } catch (err) {
        failures.push(`${String(err)} after ${events.at(-1) ?? 'start'}`);
      }
    }
  };
  const running = Promise.all(Array.from({ length: 8 }, loadLoop));
  const step = async (name: string, action: () => unknown | Promise<unknown>) => {
    events.push(name);
    await action();
    await delay(1_500);
  };
  await delay(500);
  await step('kill -9 b1', () => b1.stop('SIGKILL'));
  await step('SIGSTOP b2', () => b2.child.kill('SIGSTOP'));
  await step('SIGCONT b2', () => b2.child.kill('SIGCONT'));
  await step('reload a broken config', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'velocity-chaos-')), 'broken.yaml');
    writeFileSync(file, 'services: [ { name: app, servers: [not a url] } ]\n');
    const result = await velocity.reload(file);
    rmSync(dirname(file), { recursive: true, force: true });
    assert.equal(result.ok, false, 'the broken config is rejected');
  });
  await step('reload a good config', async () => {
    const result = await velocity.reload(parseConfig(yaml([b2.url, b3.url, b4.url]), 'good.yaml').config);
    assert.equal(result.ok, true, JSON.stringify(result.errors));
  });
  await step('remove b3 through the control plane', () => velocity.controlPlane.removeServer('app', `127.0.0.1:${b3.port}`));
  stop = true;
  await running;
  t.diagnostic(`${sent} requests, ${failures.length} failed; events: ${events.join(' → ')}`);
  assert.ok(sent > 200, `the load ran (${sent})`);
  assert.deepEqual(failures, []);
});
