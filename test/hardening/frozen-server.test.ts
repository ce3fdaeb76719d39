/**
 * #22 point 4: a frozen server (SIGSTOP) under steady load costs no idempotent
 * request with the default retry budget, and a retry the budget refuses is
 * visible — `retryDenied: "budget"` in the access-log record and
 * `velocity_retries_denied_total{reason="budget"}`. Load is bounded in requests and seconds.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import type { RequestRecord } from '../../src/observe/events.ts';
import { recordJson } from '../../src/observe/record-json.ts';
import { startSilentServer } from '../support/silent-server.ts';
import { delay, eventually, startBackends, startInProcess } from '../support/velocity.ts';

test('a server frozen for 3 s under steady load costs no idempotent request with the default retry budget', async (t) => {
  const backends = await startBackends(t, 3);
  // The config; the health-check timeout is the only thing loosened, so that a loaded test machine
  // does not fail checks of the servers that are not frozen.
  const velocity = await startInProcess(
    t,
    `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: demo
    servers: [${backends.map((b) => b.url).join(', ')}]
    health: { type: http, path: /health, interval: 500ms, timeout: 2s, unhealthy_threshold: 2, healthy_threshold: 2 }
    timeouts: { connect: 500ms }
    retries: { attempts: 3, per_try_timeout: 1s }
`,
  );
  const records: RequestRecord[] = [];
  velocity.dataPlane.observers.add((r) => records.push(r));
  const agent = new Agent({ connections: 64, keepAliveTimeout: 2_000 });
  t.after(() => agent.close());
  const url = `http://127.0.0.1:${velocity.address.port}/`;
  const statuses = new Map<number, number>();
  let sent = 0;
  const until = Date.now() + 9_000;
  // The load shape (hey -c 100 -q 5): 100 clients, each at most 5 requests per second.
  const client = async () => {
    // Bounded: at most 9 s and 6,000 requests in all.
    while (Date.now() < until && sent < 6_000) {
      const next = Date.now() + 200;
      sent++;
      const res = await request(url, { dispatcher: agent });
      await res.body.dump();
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      await delay(Math.max(0, next - Date.now()));
    }
  };
  const frozen = backends[1];
  assert.ok(frozen);
  const freeze = (async () => {
    await delay(2_500);
    frozen.child.kill('SIGSTOP');
    await delay(3_000);
    frozen.child.kill('SIGCONT');
  })();
  t.after(() => frozen.child.kill('SIGCONT'));
  await Promise.all([freeze, ...Array.from({ length: 100 }, client)]);
  const failed = [...statuses].filter(([s]) => s !== 200);
  const retried = records.filter((r) => r.retries > 0);
  assert.ok(retried.length > 0, 'requests reached the frozen server and were retried');
  t.diagnostic(`${sent} requests, ${retried.length} retried, statuses ${JSON.stringify([...statuses])}`);
  assert.deepEqual(failed, [], `every request answered 200 (${sent} sent; ${retried.length} retried); denied: ${JSON.stringify(records.filter((r) => r.retryDenied).slice(0, 3))}`);
});

test('a retry the budget refuses is named in the access-log record and counted in the metrics', async (t) => {
  // One server accepts and never answers; the other is fine. The budget allows no retry at all.
  const hangingPort = await startSilentServer(t);
  const [good] = await startBackends(t, 1);
  const velocity = await startInProcess(
    t,
    `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
services:
  - name: app
    servers: ["http://127.0.0.1:${hangingPort}", ${good?.url}]
    policy: round-robin
    retries: { attempts: 2, per_try_timeout: 300ms, budget: 0, min_retries_per_second: 0 }
    passive_health: { enabled: false }
    circuit_breaker: { enabled: false }
`,
  );
  const records: RequestRecord[] = [];
  velocity.dataPlane.observers.add((r) => records.push(r));
  const url = `http://127.0.0.1:${velocity.address.port}/`;
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) {
    const res = await request(url);
    await res.body.dump();
    statuses.push(res.statusCode);
  }
  assert.ok(statuses.includes(504), `the hanging server's requests time out: ${statuses}`);
  await eventually(() => records.length === 4, 10_000, 'all four requests recorded');
  const refused = records.filter((r) => r.status === 504);
  assert.ok(refused.length > 0);
  for (const r of refused) {
    assert.equal(r.retries, 0);
    assert.equal(r.retryDenied, 'budget');
    assert.match(recordJson(r), /"retryDenied":"budget"/);
  }
  for (const r of records.filter((x) => x.status === 200)) assert.equal(r.retryDenied, undefined);
  const metrics = await (await request(`http://127.0.0.1:${velocity.adminAddress?.port}/metrics`)).body.text();
  assert.match(metrics, new RegExp(`velocity_retries_denied_total\\{service="app",reason="budget"\\} ${refused.length}\\b`));
});
