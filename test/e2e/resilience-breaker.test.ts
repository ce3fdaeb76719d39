/** Circuit breaker, request queue, slow start and draining, end to end. */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { describe, test } from 'node:test';
import { CIRCUIT_CLOSED, CIRCUIT_OPEN } from '../../src/state/server-cells.ts';
import { delay, eventually, get, startApp, startBackends, testAgent } from '../support/velocity.ts';

describe('circuit breaker', () => {
  test('a hanging path gives 504 at the timeout, opens the circuit after 3, half-opens, closes on success, and re-opens for twice as long', async (t) => {
    const [backend] = await startBackends(t, 1);
    const velocity = await startApp(
      t,
      `servers: [${backend?.url}]
timeouts: { response_header: 200ms }
retries: { attempts: 1 }
passive_health: { enabled: false }
circuit_breaker: { consecutive_failures: 3, open_duration: 400ms, max_open_duration: 5s, half_open_requests: 1 }
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}`;
    const agent = testAgent(t);
    const server = () => velocity.dataPlane.service('app')?.servers[0];
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      const r = await get(agent, `${url}/hang?delay=3000`);
      assert.equal(r.status, 504);
      assert.equal(r.headers['x-velocity-error'], 'UPSTREAM_TIMEOUT');
      const took = Date.now() - started;
      assert.ok(took >= 190 && took < 1500, `504 after ${took} ms`);
    }
    assert.equal(server()?.circuitState, CIRCUIT_OPEN);
    const firstOpen = (server()?.circuitOpenUntil ?? 0) - Date.now();
    assert.ok(firstOpen > 200 && firstOpen <= 400, `open for ${firstOpen} ms`);
    const refused = await get(agent, `${url}/`);
    assert.equal(refused.status, 503, 'open circuit: no request reaches the server');
    assert.equal(refused.headers['x-velocity-error'], 'NO_HEALTHY_SERVER');

    // After the open duration one trial goes through; it fails, so the circuit re-opens for twice as long.
    await delay(450);
    assert.equal((await get(agent, `${url}/hang?delay=3000`)).status, 504);
    assert.equal(server()?.circuitState, CIRCUIT_OPEN);
    const secondOpen = (server()?.circuitOpenUntil ?? 0) - Date.now();
    assert.ok(secondOpen > 600 && secondOpen <= 800, `re-opened for ${secondOpen} ms (2 × 400)`);

    // After that, a successful trial closes it.
    await delay(850);
    const trial = await get(agent, `${url}/`);
    assert.equal(trial.status, 200);
    assert.equal(server()?.circuitState, CIRCUIT_CLOSED);
    assert.equal((await get(agent, `${url}/`)).status, 200);
  });

  test('a half-open circuit admits only the configured number of trials at once', async (t) => {
    const [backend] = await startBackends(t, 1);
    const velocity = await startApp(
      t,
      `servers: [${backend?.url}]
timeouts: { response_header: 150ms }
retries: { attempts: 1 }
passive_health: { enabled: false }
queue: { max_length: 0 }
circuit_breaker: { consecutive_failures: 2, open_duration: 300ms, half_open_requests: 2 }
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}`;
    const agent = testAgent(t);
    const transitions: string[] = [];
    velocity.dataPlane.upstreamChanges.on('change', (c) => {
      if (c.kind === 'circuit') transitions.push(`${c.change.from} → ${c.change.to}`);
    });
    for (let i = 0; i < 2; i++) await get(agent, `${url}/?delay=1000`);
    await delay(350);
    const results = await Promise.all(Array.from({ length: 5 }, () => get(agent, `${url}/?delay=100`)));
    const statuses = results.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 503, 503, 503]);
    assert.equal(velocity.dataPlane.service('app')?.servers[0]?.circuitState, CIRCUIT_CLOSED);
    // The two trials ran while the circuit was half-open, and their successes closed it.
    assert.deepEqual(transitions, ['closed → open', 'open → half-open', 'half-open → closed']);
  });
});

describe('request queue', () => {
  test('with max_connections 1 and a slow backend, requests past the queue get 503 with Retry-After and queued ones complete in order', async (t) => {
    const [backend] = await startBackends(t, 1);
    const velocity = await startApp(
      t,
      `servers: [{ url: ${backend?.url}, max_connections: 1 }]
queue: { max_length: 3, timeout: 5s }
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}`;
    const agent = testAgent(t);
    const finished: number[] = [];
    const pending: Promise<{ i: number; status: number; retryAfter: unknown; code: unknown }>[] = [];
    for (let i = 0; i < 6; i++) {
      pending.push(
        get(agent, `${url}/?delay=250&i=${i}`).then((r) => {
          if (r.status === 200) finished.push(i);
          return { i, status: r.status, retryAfter: r.headers['retry-after'], code: r.headers['x-velocity-error'] };
        }),
      );
      await delay(30);
    }
    const results = await Promise.all(pending);
    assert.deepEqual(
      results.map((r) => r.status),
      [200, 200, 200, 200, 503, 503],
    );
    for (const r of results.slice(4)) {
      assert.equal(r.code, 'QUEUE_FULL');
      assert.equal(r.retryAfter, '5');
    }
    assert.deepEqual(finished, [0, 1, 2, 3], 'queued requests complete in arrival order');
    assert.equal(velocity.dataPlane.queueFor(velocity.dataPlane.service('app') as never).length, 0);
  });

  test('a queued request times out with 503 QUEUE_TIMEOUT, and one whose client left is dropped from the queue', async (t) => {
    const [backend] = await startBackends(t, 1);
    const velocity = await startApp(
      t,
      `servers: [{ url: ${backend?.url}, max_connections: 1 }]
queue: { max_length: 5, timeout: 300ms }
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}`;
    const agent = testAgent(t);
    const slow = get(agent, `${url}/?delay=1000`);
    await delay(50);
    const timedOut = await get(agent, `${url}/`);
    assert.equal(timedOut.status, 503);
    assert.equal(timedOut.headers['x-velocity-error'], 'QUEUE_TIMEOUT');
    const abandoned = get(agent, `${url}/`, {}).catch(() => 'aborted');
    void abandoned;
    // A client that leaves resets its connection (a bare FIN before the answer counts as leaving too,
    // with client.abort_on_close on: see test/proxy/abort-on-close.test.ts).
    const leaving = connect(velocity.address.port, '127.0.0.1');
    leaving.on('error', () => {});
    leaving.write('GET / HTTP/1.1\r\nHost: app\r\n\r\n');
    await delay(50);
    const queue = velocity.dataPlane.queueFor(velocity.dataPlane.service('app') as never);
    await eventually(() => queue.length === 2, 5_000, 'both requests are queued');
    leaving.resetAndDestroy();
    await eventually(() => queue.length === 1, 1_000, 'the abandoned request left the queue');
    await slow;
  });
});

describe('slow start and draining', () => {
  test('a server that comes back ramps its share up over the slow-start window', async (t) => {
    const backends = await startBackends(t, 2);
    const velocity = await startApp(
      t,
      `policy: weighted-round-robin
servers: [${backends.map((b) => b.url).join(', ')}]
slow_start: { window: 3s }
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const returning = `127.0.0.1:${backends[1]?.port}`;
    velocity.controlPlane.setAdminState('app', returning, 'disabled');
    velocity.controlPlane.setAdminState('app', returning, 'enabled');
    const share = async (n: number) => {
      let hits = 0;
      for (let i = 0; i < n; i++) if ((await get(agent, url)).headers['x-backend'] === 'b2') hits++;
      return hits / n;
    };
    const early = await share(60);
    await delay(1_800);
    const late = await share(60);
    await delay(1_500);
    const full = await share(60);
    assert.ok(early < 0.3, `early share ${early}`);
    assert.ok(late > early, `share grows: ${early} → ${late}`);
    assert.ok(full >= 0.45 && full <= 0.55, `full share after the window ${full}`);
  });

  test('a server removed while busy takes no new requests, finishes its in-flight one, then is removed', async (t) => {
    const backends = await startBackends(t, 2);
    const velocity = await startApp(
      t,
      `policy: round-robin
servers: [${backends.map((b) => b.url).join(', ')}]
drain_timeout: 10s
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    // A slow request is in flight on one server (whichever it reached): that one is removed.
    const inFlight = get(agent, `${url}?delay=800`);
    const servers = () => velocity.dataPlane.service('app')?.servers ?? [];
    await eventually(() => servers().some((s) => s.inFlight === 1), 30_000, 'the slow request is in flight');
    const busyUrl = servers().find((s) => s.inFlight === 1)?.url;
    const [busy, other] = busyUrl === backends[0]?.url ? [backends[0], backends[1]] : [backends[1], backends[0]];
    const removed = new Promise<string>((resolve) => velocity.controlPlane.once('removed', (e) => resolve(e.reason)));
    velocity.controlPlane.removeServer('app', `127.0.0.1:${busy?.port}`);
    for (let i = 0; i < 6; i++) assert.equal((await get(agent, url)).headers['x-backend'], other?.name);
    const slow = await inFlight;
    assert.equal(slow.status, 200);
    assert.equal(slow.headers['x-backend'], busy?.name);
    assert.equal(await removed, 'drained');
    assert.equal(velocity.controlPlane.servers('app').length, 1);
  });
});
