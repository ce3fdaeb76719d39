/**
 * Chaos under a bounded load of idempotent GETs: kill -9 a backend, SIGSTOP one
 * (then SIGCONT), reload a broken config then a good one, remove a server
 * through the control plane. The second test adds the shared parts: Redis
 * restarted under a shared rate limit, the PostgreSQL log store stopped, the
 * removal through the REST admin API, and checks every event in the log lines
 * and in /metrics. Zero failed requests allowed: tuned by config (health
 * interval, per-try timeout, retries), never by loosening the assertion.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type TestContext, test } from 'node:test';
import pino from 'pino';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.ts';
import type { Velocity } from '../../src/runtime/instance.ts';
import { startPostgres } from '../support/postgres.ts';
import { startRedis } from '../support/redis.ts';
import { delay, eventually, get, startBackends, startInProcess, testAgent } from '../support/velocity.ts';

test('kill -9, SIGSTOP/SIGCONT, a broken then a good reload and a server removal during load: zero failed idempotent requests', async (t) => {
  const backends = await startBackends(t, 4);
  const [b1, b2, b3, b4] = backends as [(typeof backends)[0], (typeof backends)[0], (typeof backends)[0], (typeof backends)[0]];
  const yaml = (servers: string[]) => `listen: "127.0.0.1:0"
admin: { enabled: false }
${appService(servers)}`;
  const velocity = await startInProcess(t, yaml(backends.map((b) => b.url)));
  const events: string[] = [];
  const run = boundedLoad(t, `http://127.0.0.1:${velocity.address.port}/`, events);
  const step = stepper(events);
  await delay(500);
  await step('kill -9 b1', () => b1.stop('SIGKILL'));
  await step('SIGSTOP b2', () => b2.child.kill('SIGSTOP'));
  await step('SIGCONT b2', () => b2.child.kill('SIGCONT'));
  await step('reload a broken config', () => reloadBrokenConfig(velocity));
  await step('reload a good config', () => reloadGoodConfig(velocity, yaml([b2.url, b3.url, b4.url])));
  await step('remove b3 through the control plane', () => velocity.controlPlane.removeServer('app', `127.0.0.1:${b3.port}`));
  await run.finish();
  t.diagnostic(`${run.sent()} requests, ${run.failures.length} failed; events: ${events.join(' → ')}`);
  assert.ok(run.sent() > 200, `the load ran (${run.sent()})`);
  assert.ok(!run.ranOut(), `the load ran through every event (it stopped on its bound after ${run.sent()} requests)`);
  assert.deepEqual(run.failures, []);
});

/** The service both tests run: tuned so that no idempotent request fails (health, timeouts, retries, ejection). */
const appService = (servers: string[]) => `services:
  - name: app
    health: { type: http, path: /health, interval: 500ms, timeout: 1s, unhealthy_threshold: 2, healthy_threshold: 1 }
    timeouts: { connect: 500ms }
    retries: { attempts: 4, per_try_timeout: 1s, budget: 1, min_retries_per_second: 1000, backoff: { base: 5ms, max: 20ms } }
    passive_health: { consecutive_failures: 2, max_ejected_percent: 50 }
    servers: [${servers.join(', ')}]
`;

/** Runs one chaos event, names it (failures say which event they followed), then lets things settle. */
const stepper =
  (events: string[]) =>
  async (name: string, action: () => unknown | Promise<unknown>, settleMs = 1_500): Promise<void> => {
    events.push(name);
    await action();
    await delay(settleMs);
  };

async function reloadBrokenConfig(velocity: Velocity): Promise<void> {
  const file = join(mkdtempSync(join(tmpdir(), 'velocity-chaos-')), 'broken.yaml');
  writeFileSync(file, 'services: [ { name: app, servers: [not a url] } ]\n');
  const result = await velocity.reload(file);
  rmSync(dirname(file), { recursive: true, force: true });
  assert.equal(result.ok, false, 'the broken config is rejected');
}

async function reloadGoodConfig(velocity: Velocity, yaml: string): Promise<void> {
  const result = await velocity.reload(parseConfig(yaml, 'good.yaml').config);
  assert.equal(result.ok, true, JSON.stringify(result.errors));
}

const TOKEN = 'chaos-admin-token-0123456789';

/**
 * Idempotent GETs from 8 loops until finish(), bounded in requests and time; every non-200 is a failure. The
 * bounds are far above what the events take, so the load runs through every one of them: a load that ran out
 * first would leave the later events (a database stop whose failure is only logged when there are records to
 * write, reloads, a removal) without traffic to prove anything with; ranOut() says so.
 */
function boundedLoad(t: TestContext, url: string, events: string[], limits = { requests: 500_000, ms: 90_000 }) {
  const agent = testAgent(t);
  const failures: string[] = [];
  let sent = 0;
  let stop = false;
  let ranOut = false;
  const deadline = Date.now() + limits.ms;
  const loop = async () => {
    while (!stop && sent < limits.requests && Date.now() < deadline) {
      sent++;
      try {
        const r = await get(agent, url);
        if (r.status !== 200) failures.push(`${r.status} ${String(r.headers['x-velocity-error'])} after ${events.at(-1) ?? 'start'}`);
      } catch (err) {
        failures.push(`${String(err)} after ${events.at(-1) ?? 'start'}`);
      }
    }
    if (!stop) ranOut = true;
  };
  const running = Promise.all(Array.from({ length: 8 }, loop));
  return {
    failures,
    sent: () => sent,
    /** Whether a loop ended on a bound before finish(): the events after that ran without load. */
    ranOut: () => ranOut,
    async finish() {
      stop = true;
      await running;
    },
  };
}

/** A counter's value from the Prometheus text, by name and (optional) exact label text. */
function counter(metrics: string, name: string, labels = ''): number {
  const line = metrics.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  assert.ok(line, `metric ${name}${labels} is exposed`);
  return Number(line.split(' ')[1]);
}

test('kill -9, SIGSTOP, Redis restart, log database stop, broken and good reloads, removal via the admin API: zero failed requests, every event logged and counted', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const pg = await startPostgres(t);
  if (!pg) return;
  const backends = await startBackends(t, 4);
  const [b1, b2, b3, b4] = backends as [(typeof backends)[0], (typeof backends)[0], (typeof backends)[0], (typeof backends)[0]];
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  const logged = (pattern: RegExp) => lines.some((l) => pattern.test(l));
  const yaml = (servers: string[]) => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: ${TOKEN} }
state: { store: redis, url: "${redis.url}", on_failure: open, timeout: 1s }
rate_limits:
  - { name: generous, rate: 1000000/s, burst: 1000000 }
logs: { store: postgres, url: "${pg.url}", flush_interval: 100ms, buffer: 100000, batch: 200 }
${appService(servers)}`;
  const velocity = await startInProcess(t, yaml(backends.map((b) => b.url)), { logger });
  const admin = `http://127.0.0.1:${velocity.adminAddress?.port}`;
  const metrics = async () => (await request(`${admin}/metrics`)).body.text();
  const events: string[] = [];
  const run = boundedLoad(t, `http://127.0.0.1:${velocity.address.port}/`, events);
  const step = stepper(events);
  await delay(500);
  await step('kill -9 b1', () => b1.stop('SIGKILL'));
  await step('SIGSTOP b2', () => b2.child.kill('SIGSTOP'));
  await step('SIGCONT b2', () => b2.child.kill('SIGCONT'));
  await step('stop Redis', () => redis.stop(), 1_000);
  await step('start Redis on the same port', () => redis.start());
  await step('stop the log database', async () => {
    await pg.stop();
    // The writer notices at its next flush (100 ms); a loaded machine may take longer, so wait for the line itself.
    const ms = await eventually(() => logged(/"msg":"log store write failed/), 30_000, 'the log store failure is logged');
    t.diagnostic(`log store failure logged ${ms} ms after the database stopped`);
  });
  await step('reload a broken config', () => reloadBrokenConfig(velocity));
  await step('reload a good config', () => reloadGoodConfig(velocity, yaml([b2.url, b3.url, b4.url])));
  await step('remove b3 through the admin API', async () => {
    const res = await request(`${admin}/api/v1/services/app/servers/${encodeURIComponent(`127.0.0.1:${b3.port}`)}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(res.statusCode, 202, await res.body.text());
  });
  await eventually(() => logged(new RegExp(`"server":"127\\.0\\.0\\.1:${b3.port}".*"msg":"server removed"`)), 10_000, 'b3 removed after draining');
  await run.finish();
  const text = await metrics();
  t.diagnostic(`${run.sent()} requests, ${run.failures.length} failed; events: ${events.join(' → ')}`);
  assert.ok(run.sent() > 200, `the load ran (${run.sent()})`);
  assert.ok(!run.ranOut(), `the load ran through every event (it stopped on its bound after ${run.sent()} requests)`);
  assert.deepEqual(run.failures, []);

  // Every event in the log lines…
  const b1Id = `127\\.0\\.0\\.1:${b1.port}`;
  const expected: [string, RegExp][] = [
    ['b1 down or ejected', new RegExp(`"server":"${b1Id}".*"msg":"(server failed active health checks|server ejected by passive health)"`)],
    ['redis lost', /"msg":"redis unreachable/],
    ['redis back', /"msg":"redis reachable again/],
    ['log store failing', /"msg":"log store write failed/],
    ['reload rejected', /"msg":"config reload rejected/],
    ['reload applied', /"msg":"config reloaded"/],
    ['server removed', /"msg":"server removed"/],
  ];
  const missing = expected.filter(([, p]) => !logged(p)).map(([name]) => name);
  assert.deepEqual(missing, [], `events missing from the log:\n${lines.join('')}`);
  // …and in /metrics.
  assert.ok(counter(text, 'velocity_health_changes_total', '{to="down"}') + counter(text, 'velocity_passive_ejections_total') >= 1, 'b1 down or ejected is counted');
  assert.ok(counter(text, 'velocity_state_store_outages_total') >= 1, 'the Redis outage is counted');
  assert.ok(counter(text, 'velocity_log_store_errors_total') >= 1, 'log store write failures are counted');
  assert.ok(counter(text, 'velocity_log_entries_written_total') >= 1, 'entries were written before the database stopped');
  assert.ok(counter(text, 'velocity_config_reloads_total', '{result="failure"}') >= 1, 'the rejected reload is counted');
  assert.ok(counter(text, 'velocity_config_reloads_total', '{result="success"}') >= 1, 'the applied reload is counted');
  assert.ok(counter(text, 'velocity_servers_removed_total') >= 1, 'the removal is counted');
});
