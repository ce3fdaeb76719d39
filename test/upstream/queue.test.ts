/** The request queue with a real service runtime over shared state (no sockets): order, bounds, timeouts, leavers. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import type { VelocityError } from '../../src/errors.ts';
import { silentLogger } from '../../src/observe/logger.ts';
import { SharedState } from '../../src/state/shared-state.ts';
import { ControlPlane } from '../../src/upstream/control-plane.ts';
import type { Lease } from '../../src/upstream/lease.ts';
import { RequestQueue } from '../../src/upstream/queue.ts';
import type { UpstreamServer } from '../../src/upstream/server.ts';
import { policyLoader, ServiceRuntime } from '../../src/upstream/service.ts';

const request = { clientIp: '127.0.0.1', method: 'GET', url: '/', header: () => undefined, cookie: () => undefined };
const none: ReadonlySet<UpstreamServer> = new Set();

/** A service of `servers` servers that each take one request at a time, as the data plane would run it. */
function setup(t: { after(fn: () => unknown): void }, servers: number, queue: string) {
  const list = Array.from({ length: servers }, (_, i) => `{ url: "http://127.0.0.1:${9100 + i}", max_connections: 1 }`).join(', ');
  const { config } = parseConfig(`listen: "127.0.0.1:0"\nservices:\n  - name: app\n    policy: round-robin\n    servers: [${list}]\n    queue: ${queue}\n`, 'q.yaml');
  const state = new SharedState(undefined, { servers: 8, services: 2, threads: 2 });
  const control = new ControlPlane(state, silentLogger());
  t.after(() => control.close());
  const spec = control.applyConfig(config).services[0];
  assert.ok(spec);
  const service = new ServiceRuntime(spec, state, 0, undefined, policyLoader(process.cwd()), { upstreamChange: () => {}, tlsFailure: () => {} });
  return { service, queue: new RequestQueue(service, service.cells) };
}

/** Takes every server's only slot. */
function fill(service: ServiceRuntime): Lease[] {
  const taken: Lease[] = [];
  for (let s = service.acquire(request, none); s; s = service.acquire(request, none)) taken.push(s);
  assert.equal(taken.length, service.servers.length);
  return taken;
}

/** The server a queue wait was answered with. */
const serverOf = (result: Lease | VelocityError) => (result as Lease).server;

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('request queue', () => {
  test('waiters are served in arrival order as capacity frees', async (t) => {
    const { service, queue } = setup(t, 1, '{ max_length: 10, timeout: 5s }');
    const [busy] = fill(service) as [Lease];
    const served: number[] = [];
    const waits = [0, 1, 2].map((i) =>
      queue.wait(request, none, new AbortController().signal).then((result) => {
        served.push(i);
        return result as Lease;
      }),
    );
    await tick();
    assert.equal(queue.length, 3);
    assert.deepEqual(served, [], 'nobody is served while the server is full');
    busy.end();
    const first = (await waits[0]) as Lease;
    assert.equal(first.server, busy.server);
    assert.deepEqual(served, [0]);
    first.end();
    ((await waits[1]) as Lease).end();
    await waits[2];
    assert.deepEqual(served, [0, 1, 2]);
    assert.equal(queue.length, 0);
  });

  test('past max_length a request is refused at once with QUEUE_FULL and Retry-After', async (t) => {
    const { service, queue } = setup(t, 1, '{ max_length: 2, timeout: 3s }');
    const [busy] = fill(service) as [Lease];
    const signal = new AbortController().signal;
    const queued = [queue.wait(request, none, signal), queue.wait(request, none, signal)];
    const refused = (await queue.wait(request, none, signal)) as VelocityError;
    assert.equal(refused.code, 'QUEUE_FULL');
    assert.equal(refused.status, 503);
    assert.equal(refused.retryAfter, 3);
    busy.end();
    ((await queued[0]) as Lease).end();
    await queued[1];
  });

  test('a request waiting past queue.timeout gets QUEUE_TIMEOUT and leaves the queue', async (t) => {
    const { service, queue } = setup(t, 1, '{ max_length: 5, timeout: 100ms }');
    fill(service);
    const result = (await queue.wait(request, none, new AbortController().signal)) as VelocityError;
    assert.equal(result.code, 'QUEUE_TIMEOUT');
    assert.equal(result.retryAfter, 1);
    assert.equal(queue.length, 0);
  });

  test('a waiter whose client went away is dropped, and the next one gets the server', async (t) => {
    const { service, queue } = setup(t, 1, '{ max_length: 5, timeout: 5s }');
    const [busy] = fill(service) as [Lease];
    const leaving = new AbortController();
    const gone = queue.wait(request, none, leaving.signal);
    const next = queue.wait(request, none, new AbortController().signal);
    await tick();
    assert.equal(queue.length, 2);
    leaving.abort();
    assert.equal(((await gone) as VelocityError).code, 'QUEUE_TIMEOUT');
    assert.equal(queue.length, 1);
    busy.end();
    assert.equal(serverOf(await next), busy.server);
    assert.equal(busy.server.inFlight, 1, 'the server was counted once, for the waiter that got it');
  });

  test('a retry that excludes the freed server does not hold up the requests behind it', async (t) => {
    const { service, queue } = setup(t, 2, '{ max_length: 5, timeout: 5s }');
    const [a, b] = fill(service) as [Lease, Lease];
    const retry = queue.wait(request, new Set([a.server]), new AbortController().signal);
    const fresh = queue.wait(request, none, new AbortController().signal);
    await tick();
    a.end();
    assert.equal(serverOf(await fresh), a.server, 'the request behind the retry takes the server the retry already tried');
    b.end();
    assert.equal(serverOf(await retry), b.server);
  });

  test('waiters are answered NO_HEALTHY_SERVER when every server they could use goes down', async (t) => {
    const { service, queue } = setup(t, 1, '{ max_length: 5, timeout: 5s }');
    const [busy] = fill(service) as [Lease];
    const waiting = queue.wait(request, none, new AbortController().signal);
    await tick();
    busy.server.activeUp = false;
    const result = (await waiting) as VelocityError;
    assert.equal(result.code, 'NO_HEALTHY_SERVER');
    assert.equal(queue.length, 0);
  });
});
