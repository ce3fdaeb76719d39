/**
 * The foundation end to end: the real binary in front of real `velocity backend`
 * processes, over real sockets.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { delay, eventually, get, load, startBackendProcess, startBackends, startInProcess, startVelocityProcess, testAgent } from '../support/velocity.ts';

const serviceYaml = (servers: string, extra = '') => `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
${extra}    servers:
${servers}`;

describe('balancing through the binary', () => {
  test('round robin is exact over full cycles', async (t) => {
    const backends = await startBackends(t, 3);
    const velocity = await startVelocityProcess(t, serviceYaml(backends.map((b) => `      - ${b.url}\n`).join('')));
    const agent = testAgent(t);
    const seen: string[] = [];
    for (let i = 0; i < 30; i++) seen.push(String((await get(agent, `${velocity.url}/`)).headers['x-backend']));
    for (let i = 3; i < seen.length; i++) assert.equal(seen[i], seen[i - 3], `position ${i} breaks the cycle: ${seen.join(' ')}`);
    assert.deepEqual(new Set(seen.slice(0, 3)), new Set(['b1', 'b2', 'b3']));
  });

  test('weighted round robin gives each server exactly its weight per cycle, interleaved', async (t) => {
    const backends = await startBackends(t, 3);
    const weights = [5, 1, 1];
    const servers = backends.map((b, i) => `      - url: ${b.url}\n        weight: ${weights[i]}\n`).join('');
    const velocity = await startVelocityProcess(t, serviceYaml(servers, '    policy: weighted-round-robin\n'));
    const agent = testAgent(t);
    const seen: string[] = [];
    for (let i = 0; i < 7 * 4; i++) seen.push(String((await get(agent, `${velocity.url}/`)).headers['x-backend']));
    assert.equal(seen.slice(0, 7).join(' '), 'b1 b1 b2 b1 b3 b1 b1');
    for (let cycle = 0; cycle < 4; cycle++) {
      const part = seen.slice(cycle * 7, cycle * 7 + 7);
      assert.deepEqual([part.filter((s) => s === 'b1').length, part.filter((s) => s === 'b2').length, part.filter((s) => s === 'b3').length], weights);
    }
  });

  test('least connections sends new requests to the idle server while another holds slow ones', async (t) => {
    const backends = await startBackends(t, 2);
    const velocity = await startInProcess(t, serviceYaml(backends.map((b) => `      - ${b.url}\n`).join(''), '    policy: least-connections\n'));
    const url = `http://127.0.0.1:${velocity.address.port}`;
    const agent = testAgent(t);
    const servers = () => velocity.dataPlane.service('app')?.servers ?? [];
    // Slow enough that the waits below, however loaded the machine, end long before they do.
    const slow = `${url}/?delay=10000`;
    // Two slow requests: with ties broken in rotation they land one on each server.
    const first = [get(agent, slow), get(agent, slow)];
    await eventually(() => servers().every((s) => s.inFlight === 1), 30_000, 'one slow request on each server');
    // A third slow request goes to one server; from then on that server has 2, the other 1.
    const third = get(agent, slow);
    await eventually(() => servers().some((s) => s.inFlight === 2), 30_000, 'one server holds two slow requests');
    const busy = servers().find((s) => s.inFlight === 2);
    assert.ok(busy, 'one server holds two slow requests');
    // One at a time, so each finds the same counts: 2 on the busy server, 1 on the other.
    const quick = [];
    for (let i = 0; i < 6; i++) quick.push(await get(agent, `${url}/`));
    for (const r of quick) assert.notEqual(r.headers['x-backend'], busy.id === `127.0.0.1:${backends[0]?.port}` ? 'b1' : 'b2');
    await Promise.all([...first, third]);
  });

  test('two services on different hosts are routed and balanced independently', async (t) => {
    const [a1, a2, b1, b2] = await Promise.all([0, 1, 2, 3].map((i) => startBackendProcess(t, ['shop-1', 'shop-2', 'blog-1', 'blog-2'][i] as string)));
    const velocity = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: shop
    hosts: [shop.localhost]
    policy: round-robin
    servers: [${a1?.url}, ${a2?.url}]
  - name: blog
    hosts: ["*.blog.example"]
    policy:
      name: weighted-round-robin
    servers:
      - url: ${b1?.url}
        weight: 3
      - url: ${b2?.url}
        weight: 1
`,
    );
    const agent = testAgent(t);
    const shop: string[] = [];
    const blog: string[] = [];
    for (let i = 0; i < 8; i++) {
      shop.push(String((await get(agent, `${velocity.url}/`, { headers: { host: 'SHOP.localhost:8000' } })).headers['x-backend']));
      blog.push(String((await get(agent, `${velocity.url}/`, { headers: { host: 'www.blog.example' } })).headers['x-backend']));
    }
    assert.deepEqual(shop.slice(0, 4).sort(), ['shop-1', 'shop-1', 'shop-2', 'shop-2']);
    assert.equal(blog.filter((b) => b === 'blog-1').length, 6);
    assert.equal(blog.filter((b) => b === 'blog-2').length, 2);
    const none = await get(agent, `${velocity.url}/`, { headers: { host: 'other.example' } });
    assert.equal(none.status, 404);
    assert.equal(none.headers['x-velocity-error'], 'NO_ROUTE');
    assert.doesNotMatch(none.body, /shop|blog/, 'the service list is logged, not shown to clients');
    await velocity.logs.waitFor(/no service matches this request/);
  });
});

describe('active health checks', () => {
  for (const type of ['http', 'tcp'] as const) {
    test(`a killed backend leaves the rotation within interval × unhealthy_threshold (+1 interval) and returns after restart (${type})`, async (t) => {
      const backends = await startBackends(t, 2);
      const velocity = await startVelocityProcess(
        t,
        serviceYaml(
          backends.map((b) => `      - ${b.url}\n`).join(''),
          `    health: { type: ${type}, path: /health, interval: 200ms, timeout: 150ms, unhealthy_threshold: 3, healthy_threshold: 2 }
    retries: { attempts: 1 }
    passive_health: { enabled: false }
    circuit_breaker: { enabled: false }
`,
        ),
      );
      const agent = testAgent(t);
      const victim = backends[1];
      assert.ok(victim);
      await victim.stop('SIGKILL');
      const killedAt = Date.now();
      await velocity.logs.waitFor(/server failed active health checks/, 5_000);
      const detectMs = Date.now() - killedAt;
      assert.ok(detectMs <= 200 * 3 + 200 + 400, `detected after ${detectMs}ms`);
      for (let i = 0; i < 6; i++) {
        const r = await get(agent, `${velocity.url}/`);
        assert.equal(r.status, 200);
        assert.equal(r.headers['x-backend'], 'b1');
      }
      await victim.restart();
      await velocity.logs.waitFor(/server is healthy again/, 5_000);
      const seen = new Set<string>();
      for (let i = 0; i < 4; i++) seen.add(String((await get(agent, `${velocity.url}/`)).headers['x-backend']));
      assert.deepEqual([...seen].sort(), ['b1', 'b2']);
    });
  }

  test('a service whose every server is down answers 503 with the error code', async (t) => {
    const [backend] = await startBackends(t, 1);
    assert.ok(backend);
    const velocity = await startInProcess(t, serviceYaml(`      - ${backend.url}\n`, '    health: { type: tcp, interval: 100ms, timeout: 100ms, unhealthy_threshold: 1 }\n'));
    await backend.stop('SIGKILL');
    const agent = testAgent(t);
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    await eventually(async () => (await get(agent, url)).status === 503, 3_000, 'the service reports 503');
    const r = await get(agent, url);
    assert.equal(r.headers['x-velocity-error'], 'NO_HEALTHY_SERVER');
  });
});

describe('forwarding', () => {
  test('sets X-Forwarded-*, keeps or creates X-Request-Id, removes hop-by-hop and Connection-listed headers', async (t) => {
    const [backend] = await startBackends(t, 1);
    const velocity = await startVelocityProcess(t, serviceYaml(`      - ${backend?.url}\n`));
    // node:http lets a test send hop-by-hop headers that undici refuses to send.
    const echo = (headers: Record<string, string>) =>
      new Promise<Record<string, string>>((resolve, reject) => {
        const req = httpRequest(`${velocity.url}/headers`, { headers, agent: false }, (res) => {
          let body = '';
          res.on('data', (d) => {
            body += d;
          });
          res.on('end', () => resolve(JSON.parse(body).headers));
        });
        req.on('error', reject);
        req.end();
      });
    const seen = await echo({
      host: 'app.example:8000',
      connection: 'keep-alive, x-secret',
      'x-secret': 'hop',
      'keep-alive': 'timeout=5',
      te: 'trailers',
      'proxy-authorization': 'Basic x',
      'x-forwarded-for': '6.6.6.6',
      'x-kept': 'yes',
    });
    assert.equal(seen['x-forwarded-for'], '127.0.0.1', 'a spoofed X-Forwarded-For from an untrusted client is replaced');
    assert.equal(seen['x-forwarded-proto'], 'http');
    assert.equal(seen['x-forwarded-host'], 'app.example:8000');
    assert.equal(seen.host, 'app.example:8000');
    assert.match(seen['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(seen['x-kept'], 'yes');
    for (const h of ['x-secret', 'keep-alive', 'te', 'proxy-authorization']) assert.equal(seen[h], undefined, `${h} must not be forwarded`);
    const again = await echo({ 'x-request-id': 'client-chosen-id-42' });
    assert.equal(again['x-request-id'], 'client-chosen-id-42');
  });

  test('a 20 MB body streams to the server and back intact', async (t) => {
    const [backend] = await startBackends(t, 1);
    const velocity = await startVelocityProcess(t, serviceYaml(`      - ${backend?.url}\n`));
    const payload = Buffer.alloc(20 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE((i * 2654435761) >>> 0, i);
    const sent = createHash('sha256').update(payload).digest('hex');
    const res = await request(`${velocity.url}/echo`, { method: 'POST', body: payload, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(res.statusCode, 200);
    const hash = createHash('sha256');
    let length = 0;
    for await (const chunk of res.body) {
      hash.update(chunk as Buffer);
      length += (chunk as Buffer).length;
    }
    assert.equal(length, payload.length);
    assert.equal(hash.digest('hex'), sent);
    const download = await request(`${velocity.url}/bytes/${20 * 1024 * 1024}`);
    let got = 0;
    for await (const chunk of download.body) got += (chunk as Buffer).length;
    assert.equal(got, 20 * 1024 * 1024);
  });

  test('a malformed request gets 400 and never reaches a server', async (t) => {
    const [backend] = await startBackends(t, 1);
    const velocity = await startVelocityProcess(t, serviceYaml(`      - ${backend?.url}\n`));
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect(velocity.port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n'));
      let data = '';
      socket.on('data', (d) => {
        data += d.toString();
      });
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });
    assert.match(reply, /^HTTP\/1\.1 400 /);
    const agent = testAgent(t);
    const count = JSON.parse((await get(agent, `${backend?.url}/_count`)).body).count;
    assert.equal(count, 1, 'only our own /_count request reached the backend');
  });

  test('a refused connection costs that request a 502 and the process keeps serving', async (t) => {
    const [alive, dead] = await startBackends(t, 2);
    await dead?.stop('SIGKILL');
    const velocity = await startVelocityProcess(
      t,
      serviceYaml(`      - ${dead?.url}\n`, '    retries: { attempts: 1 }\n    passive_health: { enabled: false }\n    circuit_breaker: { enabled: false }\n'),
    );
    const agent = testAgent(t);
    const r = await get(agent, `${velocity.url}/`);
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-velocity-error'], 'UPSTREAM_CONNECT_FAILED');
    assert.ok(alive);
    assert.equal(velocity.child.exitCode, null);
  });

  test('a server that hangs costs that request a 504 at the response timeout', async (t) => {
    const [backend] = await startBackends(t, 1);
    const velocity = await startVelocityProcess(t, serviceYaml(`      - ${backend?.url}\n`, '    timeouts: { response_header: 300ms }\n    retries: { attempts: 1 }\n'));
    const agent = testAgent(t);
    // The server would answer 200 after two minutes: a 504 proves the response timeout cut it (no clock in the assertion).
    const r = await get(agent, `${velocity.url}/?delay=120000`);
    assert.equal(r.status, 504);
    assert.equal(r.headers['x-velocity-error'], 'UPSTREAM_TIMEOUT');
  });
});

describe('graceful stop', () => {
  test('SIGTERM lets an in-flight slow request finish, then exits 0', async (t) => {
    const [backend] = await startBackends(t, 1);
    const velocity = await startVelocityProcess(t, serviceYaml(`      - ${backend?.url}\n`));
    const agent = testAgent(t);
    // A process has no in-flight count to wait for: the request gets a second to arrive, and four to be answered.
    const slow = get(agent, `${velocity.url}/?delay=4000`);
    await delay(1000);
    const exit = velocity.stop('SIGTERM');
    const res = await slow;
    assert.equal(res.status, 200);
    assert.equal(res.body, 'hello from b1\n');
    assert.equal(await exit, 0);
    await assert.rejects(get(agent, `${velocity.url}/`), 'no longer accepting');
  });

  test('bounded load through the proxy has no errors', async (t) => {
    const backends = await startBackends(t, 3);
    const velocity = await startVelocityProcess(t, serviceYaml(backends.map((b) => `      - ${b.url}\n`).join('')));
    const agent = testAgent(t);
    const statuses = await load(600, 20, async () => (await get(agent, `${velocity.url}/`)).status);
    assert.deepEqual([...new Set(statuses)], [200]);
  });
});
