/** Local backend processes run by Velocity, restarted with backoff, and scaled by load. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CLI, delay, eventually, get, load, startInProcess, testAgent } from '../support/velocity.ts';

const node = JSON.stringify(process.execPath);
const cli = JSON.stringify(CLI);

describe('process provider', () => {
  test('runs N instances with PORT set, balances over them, and restarts a killed one', async (t) => {
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    process:
      command: [${node}, ${cli}, backend]
      instances: 3
      restart_backoff: { base: 100ms, max: 1s }
      ready_timeout: 60s
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(String((await get(agent, url)).headers['x-backend']));
    assert.equal(seen.size, 3, `three instances answer: ${[...seen].join(', ')}`);
    const servers = velocity.controlPlane.servers('app');
    assert.equal(servers.length, 3);
    assert.ok(servers.every((s) => s.source === 'process'));

    // Kill one instance's process: it is restarted on a new port and proposed again.
    const victim = servers[0];
    assert.ok(victim);
    const port = new URL(victim.spec.url).port;
    const { execFileSync } = await import('node:child_process');
    const pid = execFileSync('sh', ['-c', `ss -ltnp 'sport = :${port}' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2`])
      .toString()
      .trim();
    assert.match(pid, /^\d+$/, 'found the instance pid');
    process.kill(Number(pid), 'SIGKILL');
    await eventually(
      () => velocity.controlPlane.servers('app').filter((s) => s.removeBy === undefined && s.spec.url !== victim.spec.url).length === 3,
      8_000,
      'the instance is back on a new port',
    );
    const after = new Set<string>();
    for (let i = 0; i < 6; i++) after.add(String((await get(agent, url)).headers['x-backend']));
    assert.equal(after.size, 3);
  });

  test('a command that exits at once is restarted with growing backoff, not in a tight loop', async (t) => {
    const { existsSync, mkdtempSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const starts = join(mkdtempSync(join(tmpdir(), 'velocity-backoff-')), 'starts');
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: broken
    process:
      command: [${node}, -e, ${JSON.stringify(`require('fs').appendFileSync(${JSON.stringify(starts)}, 'x'); process.exit(3)`)}]
      restart_backoff: { base: 200ms, max: 2s }
      ready_timeout: 5s
`,
    );
    await delay(2_500);
    // A loaded machine takes a while to start even a failing node; the second start proves the restart.
    await eventually(() => existsSync(starts) && readFileSync(starts, 'utf8').length >= 2, 30_000, 'the command is started again');
    // Backoff 200, 400, 800, 1600 ms: about 4 starts in 2.5 s (a tight loop would be dozens).
    const count = readFileSync(starts, 'utf8').length;
    assert.ok(count >= 2 && count <= 6, `${count} starts in 2.5 s`);
    const agent = testAgent(t);
    const r = await get(agent, `http://127.0.0.1:${velocity.address.port}/`);
    assert.equal(r.status, 503, 'no instance ever became ready');
  });
});

describe('autoscaler', () => {
  test('scales slow process backends up under load and back down after it, with no failed request', async (t) => {
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
services:
  - name: slow
    policy: least-connections
    process:
      command: [${node}, ${cli}, backend, --delay, "150"]
      instances: 1
      ready_timeout: 60s
      stop_timeout: 2s
    drain_timeout: 5s
    autoscale:
      min: 1
      max: 4
      target: { in_flight_per_server: 2 }
      interval: 250ms
      scale_up_cooldown: 500ms
      scale_down_cooldown: 1s
      stabilization_window: 1s
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const live = () => velocity.controlPlane.servers('slow').filter((s) => s.removeBy === undefined).length;
    const failures: number[] = [];
    let peak = 1;
    // Heavy phase: 10 in flight against 150 ms backends until it has scaled to 3, at most 60 s or 4,000
    // requests (a loaded machine took 10 s to start one backend).
    const heavyUntil = Date.now() + 60_000;
    await load(4_000, 10, async () => {
      if (Date.now() > heavyUntil || peak >= 3) return 0;
      const r = await get(agent, url);
      if (r.status !== 200) failures.push(r.status);
      peak = Math.max(peak, live());
      return r.status;
    });
    assert.ok(peak >= 3, `scaled up to ${peak}`);
    // Light phase while it scales down: 1 in flight; every request must still succeed.
    const lightUntil = Date.now() + 8_000;
    let scaledDown = false;
    await load(200, 1, async () => {
      if (Date.now() > lightUntil || scaledDown) return 0;
      const r = await get(agent, url);
      if (r.status !== 200) failures.push(r.status);
      scaledDown = live() === 1;
      return r.status;
    });
    await eventually(() => live() === 1, 8_000, 'scaled back down to 1');
    assert.deepEqual(failures, []);
    // Every decision is exposed with the metric values that caused it.
    const api = await get(agent, `http://127.0.0.1:${velocity.adminAddress?.port}/api/v1/autoscale/slow`);
    const decisions = JSON.parse(api.body).decisions as { action: string; metric: string; value: number; target: number }[];
    const up = decisions.find((d) => d.action === 'scale-up');
    assert.ok(up && up.metric === 'in_flight_per_server' && up.value > 2 && up.target === 2, JSON.stringify(up));
    assert.ok(decisions.some((d) => d.action === 'scale-down'));
  });
});
