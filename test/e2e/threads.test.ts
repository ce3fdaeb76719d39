/**
 * The threaded mode (`workers: 2`): two data-path worker threads on one port,
 * sharing server state through shared memory, in front of real `velocity
 * backend` processes. Which thread serves a connection is the kernel's choice;
 * test/runtime/thread-probe.ts finds out per connection so each test can send
 * requests through a chosen thread.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { type Client, request } from 'undici';
import type { Velocity } from '../../src/runtime/instance.ts';
import { connectionsByThread, inFlightByThread, send, serverInFlightByThread } from '../runtime/thread-probe.ts';
import { startOtlpReceiver } from '../support/otlp.ts';
import { type BackendProcess, delay, eventually, get, startBackends, startInProcess, startVelocityProcess, testAgent } from '../support/velocity.ts';

const yaml = (backends: BackendProcess[], extra = '', service = '') => `listen: "127.0.0.1:0"
workers: 2
admin: { listen: "127.0.0.1:0" }
client: { keepalive_timeout: 60s }
${extra}
services:
  - name: app
${service}    servers: [${backends.map((b) => b.url).join(', ')}]
`;

const idOf = (b: BackendProcess) => `127.0.0.1:${b.port}`;
const origin = (v: Velocity) => `http://127.0.0.1:${v.address.port}`;

describe('worker threads sharing state', () => {
  test('least connections is exact across threads: requests held on one thread steer the other', async (t) => {
    const [b1, b2] = (await startBackends(t, 2)) as [BackendProcess, BackendProcess];
    const velocity = await startInProcess(t, yaml([b1, b2], '', '    policy: least-connections\n'));
    assert.equal(velocity.threads?.count, 2);
    const conns = await connectionsByThread(velocity, 'app', 4);
    t.after(() => conns.close());
    const [holder, other] = [conns.byThread.get(1) ?? [], conns.byThread.get(2) ?? []];

    // Four slow requests, all on thread 1, all on b1 (b2 is briefly disabled so they cannot go elsewhere).
    velocity.controlPlane.setAdminState('app', idOf(b2), 'disabled');
    const slow = holder.slice(0, 4).map((c) => send(c, '/slow?delay=6000'));
    await eventually(() => serverInFlightByThread(velocity, 'app', idOf(b1))[1] === 4, 10_000, 'thread 1 holds 4 requests on b1');
    velocity.controlPlane.setAdminState('app', idOf(b2), 'enabled');
    assert.deepEqual(serverInFlightByThread(velocity, 'app', idOf(b1)), [0, 4, 0], 'thread 2 holds nothing itself');

    // Thread 2 never saw those requests, yet it must count them: every new request goes to b2
    // (b2 stays below b1's 4 while these run). Per-thread counts would see a 0-0 tie on thread 2.
    const fresh = await Promise.all(other.slice(0, 4).map((c) => send(c, '/fresh?delay=400')));
    assert.deepEqual(
      fresh.map((r) => r.backend),
      ['b2', 'b2', 'b2', 'b2'],
    );
    for (const r of await Promise.all(slow)) assert.equal(r.backend, 'b1');
    // The count is given back when Velocity has finished the exchange, which can be a moment after the client has the body.
    await eventually(() => inFlightByThread(velocity, 'app').every((n) => n === 0), 2_000, 'every count was given back');
  });

  test('a rate limit counts each request once across threads', async (t) => {
    const backends = await startBackends(t, 1);
    const velocity = await startInProcess(t, yaml(backends, 'rate_limits:\n  - { name: limited, paths: ["/limited"], rate: 5/m, burst: 5 }'));
    const conns = await connectionsByThread(velocity, 'app', 4);
    t.after(() => conns.close());
    const [one, two] = [conns.byThread.get(1) ?? [], conns.byThread.get(2) ?? []];
    // Alternate the threads: 8 requests, 4 through each, against one allowance of 5.
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      statuses.push((await send(one[i] as Client, '/limited')).status);
      statuses.push((await send(two[i] as Client, '/limited')).status);
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
  });

  test('an auto-ban on one thread and a blocklist entry from the API hold on every thread', async (t) => {
    const backends = await startBackends(t, 1);
    const velocity = await startInProcess(
      t,
      yaml(
        backends,
        'admin: { listen: "127.0.0.1:0", token: "0123456789abcdef" }\nrate_limits:\n  - { paths: ["/login"], rate: 1/m, burst: 1, ban: { after: 1, window: 1m, duration: 10m } }',
      ).replace('admin: { listen: "127.0.0.1:0" }\n', ''),
    );
    const conns = await connectionsByThread(velocity, 'app', 1);
    t.after(() => conns.close());
    const [one, two] = [conns.byThread.get(1)?.[0] as Client, conns.byThread.get(2)?.[0] as Client];
    assert.equal((await send(one, '/login')).status, 200);
    assert.equal((await send(one, '/login')).status, 429);
    assert.equal((await send(one, '/login')).status, 429, 'over the limit a second time: banned from now on');
    // The ban was decided on thread 1; thread 2 learns it by message from the main thread.
    await eventually(async () => (await send(two, '/anything')).status === 403, 3_000, 'thread 2 refuses the banned client');

    await velocity.blocklist.remove('127.0.0.1');
    await eventually(async () => (await send(two, '/anything')).status === 200, 3_000, 'unblocked on thread 2');
    assert.equal((await send(one, '/anything')).status, 200);
    const admin = `http://127.0.0.1:${velocity.adminAddress?.port}`;
    const res = await request(`${admin}/api/v1/blocklist`, {
      method: 'POST',
      headers: { authorization: 'Bearer 0123456789abcdef', 'content-type': 'application/json' },
      body: JSON.stringify({ cidr: '127.0.0.0/8', ttl: '1m' }),
    });
    await res.body.text();
    assert.equal(res.statusCode, 201);
    // No waiting: the API answers once every thread applied the change.
    assert.equal((await send(one, '/x')).status, 403);
    assert.equal((await send(two, '/x')).status, 403);
  });

  test('reloads and API changes are live on every thread when they return', async (t) => {
    const [b1, b2] = (await startBackends(t, 2)) as [BackendProcess, BackendProcess];
    const velocity = await startInProcess(t, yaml([b1], 'admin: { listen: "127.0.0.1:0", token: "0123456789abcdef" }').replace('admin: { listen: "127.0.0.1:0" }\n', ''));
    const conns = await connectionsByThread(velocity, 'app', 2);
    t.after(() => conns.close());
    const threadsClients = [...conns.byThread.values()].flat();

    // Reload: a second service on a path of its own, served by b2.
    const reloaded = await velocity.reload({
      ...velocity.config,
      services: [
        ...velocity.config.services,
        { ...(velocity.config.services[0] as Velocity['config']['services'][number]), name: 'other', paths: ['/other'], servers: [{ url: b2.url, weight: 1 }] },
      ],
    } as Velocity['config']);
    assert.ok(reloaded.ok, JSON.stringify(reloaded));
    for (const c of threadsClients) assert.equal((await send(c, '/other/x')).backend, 'b2');

    // API: add b2 to app, then every thread balances over both at once.
    const admin = `http://127.0.0.1:${velocity.adminAddress?.port}`;
    const res = await request(`${admin}/api/v1/services/app/servers`, {
      method: 'POST',
      headers: { authorization: 'Bearer 0123456789abcdef', 'content-type': 'application/json' },
      body: JSON.stringify({ url: b2.url }),
    });
    await res.body.text();
    assert.equal(res.statusCode, 201);
    for (const list of conns.byThread.values()) {
      const seen = new Set<string | undefined>();
      const c = list[0] as Client;
      for (let i = 0; i < 4; i++) seen.add((await send(c, '/')).backend);
      assert.deepEqual([...seen].sort(), ['b1', 'b2']);
    }
  });

  test('request records from every thread reach the main thread: observers and the access-log file', async (t) => {
    const backends = await startBackends(t, 1);
    const dir = (await import('node:fs')).mkdtempSync(`${(await import('node:os')).tmpdir()}/velocity-threads-`);
    const file = `${dir}/access.log`;
    const velocity = await startInProcess(t, yaml(backends, `access_log: { output: ${file} }`));
    const records: string[] = [];
    velocity.observe((r) => records.push(r.path));
    const conns = await connectionsByThread(velocity, 'app', 1);
    t.after(() => conns.close());
    await send(conns.byThread.get(1)?.[0] as Client, '/from-thread-1');
    await send(conns.byThread.get(2)?.[0] as Client, '/from-thread-2');
    await eventually(() => records.includes('/from-thread-1') && records.includes('/from-thread-2'), 3_000, 'both records observed');
    await eventually(() => /from-thread-1/.test(readFileSync(file, 'utf8')) && /from-thread-2/.test(readFileSync(file, 'utf8')), 3_000, 'both lines logged');
    const metrics = await request(`http://127.0.0.1:${velocity.adminAddress?.port}/metrics`);
    const text = await metrics.body.text();
    const served = /velocity_request_duration_seconds_count\{service="app"\} (\d+)/.exec(text);
    assert.ok(served && Number(served[1]) >= records.length, `metrics count every thread's requests:\n${text.slice(0, 400)}`);
  });

  test('with tracing on, the serving threads export the spans and the main thread, which serves nothing, builds no exporter', async (t) => {
    const backends = await startBackends(t, 1);
    const collector = await startOtlpReceiver(t);
    const velocity = await startInProcess(t, yaml(backends, `tracing: { otlp: { endpoint: "${collector.endpoint}", flush_interval: 100ms } }`));
    assert.equal(velocity.dataPlane.tracer.exporter, undefined, 'no span exporter on the main thread');
    const conns = await connectionsByThread(velocity, 'app', 1);
    t.after(() => conns.close());
    await send(conns.byThread.get(1)?.[0] as Client, '/traced-on-thread-1');
    await send(conns.byThread.get(2)?.[0] as Client, '/traced-on-thread-2');
    const paths = () => collector.spans.map((s) => String(s.attributes['url.path'])).join(' ');
    await eventually(() => /traced-on-thread-1/.test(paths()) && /traced-on-thread-2/.test(paths()), 3_000, `spans of both threads exported (got: ${paths()})`);
    // A reload that changes tracing still leaves the main thread without one.
    const reloaded = await velocity.reload({ ...velocity.config, tracing: { ...velocity.config.tracing, sample_ratio: 0.5 } } as Velocity['config']);
    assert.ok(reloaded.ok, JSON.stringify(reloaded));
    assert.equal(velocity.dataPlane.tracer.exporter, undefined);
  });

  test('a killed thread is replaced, its in-flight counts are given back and the port keeps answering', async (t) => {
    const backends = await startBackends(t, 1);
    const velocity = await startInProcess(t, yaml(backends));
    const threads = velocity.threads;
    assert.ok(threads);
    const conns = await connectionsByThread(velocity, 'app', 2);
    t.after(() => conns.close());
    // The probe may have found more than two connections on thread 1: use exactly two.
    const victim = (conns.byThread.get(1) ?? []).slice(0, 2);
    // Two requests in flight on thread 1, then the thread dies under them.
    const lost = victim.map((c) => send(c, '/held?delay=20000').catch((err: Error) => err));
    await eventually(() => inFlightByThread(velocity, 'app')[1] === 2, 10_000, 'thread 1 holds 2 requests');
    const replaced = new Promise<number>((resolve) => threads.on('replaced', resolve));
    await threads
      .workers()
      .find((w) => w.index === 1)
      ?.worker.terminate();
    assert.equal(inFlightByThread(velocity, 'app')[1], 0, 'the dead thread’s counts were released');
    for (const r of await Promise.all(lost)) assert.ok(r instanceof Error, 'requests on the dead thread fail (their connections closed)');

    // Meanwhile and afterwards, new connections are served: the other thread kept the port open.
    for (let i = 0; i < 5; i++) {
      const res = await request(`${origin(velocity)}/during`, { reset: true });
      await res.body.text();
      assert.equal(res.statusCode, 200);
    }
    assert.equal(await replaced, 1);
    assert.equal(threads.restarts, 1);
    // The replacement serves too: probe until thread 1 gets connections again.
    const after = await connectionsByThread(velocity, 'app', 1);
    t.after(() => after.close());
    assert.equal((await send(after.byThread.get(1)?.[0] as Client, '/again')).status, 200);
  });

  test('graceful stop lets slow requests on every thread finish', async (t) => {
    const backends = await startBackends(t, 1);
    const velocity = await startInProcess(t, yaml(backends));
    const conns = await connectionsByThread(velocity, 'app', 1);
    t.after(() => conns.close());
    const slow = [1, 2].map((thread) => send(conns.byThread.get(thread)?.[0] as Client, '/slow?delay=3000'));
    await eventually(() => inFlightByThread(velocity, 'app').every((n, i) => i === 0 || n === 1), 10_000, 'one slow request on each thread');
    const closing = velocity.close();
    // Closed to new connections on every thread while the slow ones go on (every thread's listener within the bound).
    const refused = () =>
      request(`${origin(velocity)}/new`, { reset: true })
        .then((r) => r.body.text())
        .then(
          () => false,
          () => true,
        );
    await eventually(refused, 30_000, 'a new request is refused');
    const done = await Promise.all(slow);
    assert.deepEqual(
      done.map((r) => r.status),
      [200, 200],
    );
    await closing;
  });
});

describe('worker threads in the binary', () => {
  test('the built binary serves from worker threads and SIGTERM drains them', async (t) => {
    const backends = await startBackends(t, 2);
    const velocity = await startVelocityProcess(t, yaml(backends));
    await velocity.logs.waitFor(/"threads":2/);
    const agent = testAgent(t);
    const seen = new Set<string | string[] | undefined>();
    for (let i = 0; i < 6; i++) seen.add((await get(agent, `${velocity.url}/`)).headers['x-backend']);
    assert.deepEqual([...seen].sort(), ['b1', 'b2']);
    // A process has no in-flight count to wait for: the request gets a second to arrive, and four to be answered.
    const slow = get(agent, `${velocity.url}/?delay=4000`);
    await delay(1000);
    const code = await velocity.stop('SIGTERM');
    assert.equal((await slow).status, 200, 'the request in flight finished');
    assert.equal(code, 0);
  });
});
