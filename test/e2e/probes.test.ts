/**
 * /livez and /readyz: on the admin listener and on a listener path, readiness following the
 * servers' health (every service, any service, or only listening), and failing first on SIGTERM
 * while requests are still served.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { eventually, get, startBackendProcess, startInProcess, startVelocityProcess, testAgent } from '../support/velocity.ts';

/** A port nothing listens on: taken from a backend that is then stopped. */
async function deadPort(t: Parameters<typeof startBackendProcess>[0]): Promise<number> {
  const gone = await startBackendProcess(t, 'gone');
  await gone.stop();
  return gone.port;
}

const health = 'health: { type: http, path: /health, interval: 200ms, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1, start_healthy: false }';

describe('liveness and readiness probes', () => {
  test('/readyz waits for an available server in every service; /livez answers meanwhile', async (t) => {
    const up = await startBackendProcess(t, 'up');
    const downPort = await deadPort(t);
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
services:
  - name: a
    paths: [/a/]
    servers: [${up.url}]
    ${health}
  - name: b
    paths: [/b/]
    servers: [http://127.0.0.1:${downPort}]
    ${health}
`,
    );
    const agent = testAgent(t);
    const admin = `http://127.0.0.1:${velocity.adminAddress?.port}`;
    const live = await get(agent, `${admin}/livez`);
    assert.equal(live.status, 200);
    assert.deepEqual(JSON.parse(live.body), { status: 'live' });

    await eventually(async () => (await get(agent, `${admin}/api/v1/services/a`)).body.includes('"active":"up"'), 20_000, 'service a is up');
    const notReady = await get(agent, `${admin}/readyz`);
    assert.equal(notReady.status, 503);
    assert.deepEqual(JSON.parse(notReady.body), { status: 'not ready', reasons: ['no available server in 1 of 2 services'] });

    // The server of b comes up: ready.
    await startBackendProcess(t, 'b', [], downPort);
    await eventually(async () => (await get(agent, `${admin}/readyz`)).status === 200, 20_000, '/readyz turns 200');
    assert.deepEqual(JSON.parse((await get(agent, `${admin}/readyz`)).body), { status: 'ready' });
  });

  test('ready_when: any-service and listening relax readiness; the probes need no token', async (t) => {
    const downPort = await deadPort(t);
    const yaml = (when: string) => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "a-token-of-twenty-chars" }
probes: { ready_when: ${when} }
services:
  - name: b
    servers: [http://127.0.0.1:${downPort}]
    ${health}
`;
    const agent = testAgent(t);
    for (const [when, status] of [
      ['every-service', 503],
      ['any-service', 503],
      ['listening', 200],
    ] as const) {
      const velocity = await startInProcess(t, yaml(when));
      const admin = `http://127.0.0.1:${velocity.adminAddress?.port}`;
      await eventually(async () => (await get(agent, `${admin}/readyz`)).status === status, 20_000, `ready_when ${when} answers ${status}`);
      await velocity.close();
    }
  });

  test('listener_paths answer on the traffic port before routing; other paths are proxied', async (t) => {
    const backend = await startBackendProcess(t, 'b1');
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
probes: { listener_paths: { live: /_velocity/livez, ready: /_velocity/readyz } }
services:
  - name: app
    servers: [${backend.url}]
    ${health.replace('start_healthy: false', 'start_healthy: true')}
`,
    );
    const agent = testAgent(t);
    const base = `http://127.0.0.1:${velocity.address.port}`;
    const proxiedPaths: string[] = [];
    velocity.observe((record) => proxiedPaths.push(record.path));
    assert.deepEqual(JSON.parse((await get(agent, `${base}/_velocity/livez`)).body), { status: 'live' });
    const ready = await get(agent, `${base}/_velocity/readyz?from=lb`);
    assert.equal(ready.status, 200);
    assert.deepEqual(JSON.parse(ready.body), { status: 'ready' });
    const proxied = await get(agent, `${base}/_velocity/other`);
    assert.equal(proxied.status, 200);
    assert.equal(proxied.headers['x-backend'], 'b1');
    await eventually(() => proxiedPaths.length > 0, 5_000, 'the proxied request is recorded');
    assert.deepEqual(proxiedPaths, ['/_velocity/other'], 'the probes were answered by Velocity, not proxied');

    await backend.stop();
    await eventually(async () => (await get(agent, `${base}/_velocity/readyz`)).status === 503, 20_000, 'the listener path follows health');
  });

  test('on SIGTERM /readyz answers 503 during shutdown_grace while requests are still served, then Velocity drains and exits 0', async (t) => {
    const backend = await startBackendProcess(t, 'b1');
    const velocity = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
probes: { shutdown_grace: 3s, listener_paths: { ready: /_velocity/readyz } }
shutdown_timeout: 5s
services:
  - name: app
    servers: [${backend.url}]
`,
    );
    const adminPort = Number((await velocity.logs.waitFor(/"admin":"127\.0\.0\.1:(\d+)"/))[1]);
    const agent = testAgent(t);
    assert.equal((await get(agent, `http://127.0.0.1:${adminPort}/readyz`)).status, 200);
    const exited = new Promise<number | null>((resolve) => velocity.child.once('exit', (code) => resolve(code)));
    velocity.child.kill('SIGTERM');
    await velocity.logs.waitFor(/\/readyz answers 503; still serving/);
    const adminReady = await get(agent, `http://127.0.0.1:${adminPort}/readyz`);
    assert.equal(adminReady.status, 503);
    assert.deepEqual(JSON.parse(adminReady.body).reasons, ['shutting down']);
    assert.equal((await get(agent, `${velocity.url}/_velocity/readyz`, { headers: { connection: 'close' } })).status, 503);
    const served = await get(agent, `${velocity.url}/`, { headers: { connection: 'close' } });
    assert.equal(served.status, 200, 'still serving during the grace period');
    assert.equal(await exited, 0);
  });

  test('with worker threads /livez pings every data-path thread', async (t) => {
    const backend = await startBackendProcess(t, 'b1');
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
workers: 2
admin: { listen: "127.0.0.1:0" }
probes: { listener_paths: { ready: /_velocity/readyz } }
services:
  - name: app
    servers: [${backend.url}]
`,
    );
    assert.equal(velocity.threads?.count, 2);
    const agent = testAgent(t);
    const live = await get(agent, `http://127.0.0.1:${velocity.adminAddress?.port}/livez`);
    assert.equal(live.status, 200, live.body);
    // Each worker answers the listener path from its own view of the shared state.
    for (let i = 0; i < 6; i++) {
      const res = await get(agent, `http://127.0.0.1:${velocity.address.port}/_velocity/readyz`, { headers: { connection: 'close' } });
      assert.equal(res.status, 200);
    }
  });
});
