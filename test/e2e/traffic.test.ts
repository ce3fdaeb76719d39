/** Rate limits, IP filters and bans end to end: locally, and shared by several instances through a real Redis. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { startRedis } from '../support/redis.ts';
import { delay, eventually, get, startBackends, startInProcess, startVelocityProcess, testAgent } from '../support/velocity.ts';

const TOKEN = 'traffic-token-0123456789';

describe('local rate limits and IP filters', () => {
  test('exactly burst requests pass at once, then the steady rate; 429 carries Retry-After and RateLimit headers', async (t) => {
    const [b] = await startBackends(t, 1);
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
rate_limits:
  - { name: per-ip, rate: 60/m, burst: 5, headers: true }
services:
  - name: app
    servers: [${b?.url}]
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const results = await Promise.all(Array.from({ length: 8 }, () => get(agent, url)));
    const statuses = results.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    const ok = results.find((r) => r.status === 200);
    assert.equal(ok?.headers['ratelimit-policy'], '"per-ip";q=60;w=60');
    assert.match(String(ok?.headers.ratelimit), /^"per-ip";r=\d;t=\d+$/);
    const limited = results.find((r) => r.status === 429);
    assert.equal(limited?.headers['retry-after'], '1');
    assert.equal(limited?.headers['x-velocity-error'], 'RATE_LIMITED');
    assert.equal(limited?.headers['ratelimit-policy'], '"per-ip";q=60;w=60');
    assert.match(String(limited?.headers.ratelimit), /^"per-ip";r=0;t=1$/);
    // The steady rate: one a second (slow enough that a loaded machine cannot blur the burst).
    await delay(1_050);
    assert.equal((await get(agent, url)).status, 200);
    assert.equal((await get(agent, url)).status, 429);
  });

  test('per-endpoint rules count independently, and header keys separate API clients', async (t) => {
    const [b] = await startBackends(t, 1);
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [${b?.url}]
    rate_limits:
      - { name: orders, paths: ["/api/*/orders"], key: [endpoint], rate: 1/m, burst: 2 }
      - { name: search, paths: ["/search"], key: [endpoint], rate: 1/m, burst: 3 }
      - { name: keyed, paths: ["/keyed"], key: ["header:x-api-key"], rate: 1/m, burst: 1 }
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}`;
    const agent = testAgent(t);
    const status = async (path: string, headers: Record<string, string> = {}) => (await get(agent, `${url}${path}`, { headers })).status;
    assert.deepEqual([await status('/api/v1/orders'), await status('/api/v2/orders'), await status('/api/v3/orders')], [200, 200, 429]);
    assert.deepEqual([await status('/search'), await status('/search'), await status('/search'), await status('/search')], [200, 200, 200, 429]);
    assert.equal(await status('/api/v1/orders/x'), 200, '/api/*/orders is a glob, not a prefix');
    assert.deepEqual([await status('/keyed', { 'x-api-key': 'a' }), await status('/keyed', { 'x-api-key': 'b' }), await status('/keyed', { 'x-api-key': 'a' })], [200, 200, 429]);
  });

  test('IPv4 and IPv6 clients count separately; a trusted proxy’s X-Forwarded-For is used and a spoofed one ignored', async (t) => {
    const [b] = await startBackends(t, 1);
    const velocity = await startInProcess(
      t,
      `listen: ["127.0.0.1:0", "[::1]:0"]
admin: { enabled: false }
trusted_proxies: ["127.0.0.1/32"]
rate_limits:
  - { rate: 1/m, burst: 2 }
services:
  - name: app
    servers: [${b?.url}]
`,
    );
    const v4 = `http://127.0.0.1:${velocity.addresses[0]?.port}/headers`;
    const v6 = `http://[::1]:${velocity.addresses[1]?.port}/headers`;
    const agent = testAgent(t);
    const s = async (url: string, xff?: string) => (await get(agent, url, { headers: xff ? { 'x-forwarded-for': xff } : {} })).status;
    assert.deepEqual([await s(v4), await s(v4), await s(v4)], [200, 200, 429], '127.0.0.1');
    assert.deepEqual([await s(v6), await s(v6), await s(v6)], [200, 200, 429], '::1 counts on its own');
    // 127.0.0.1 is a trusted proxy: the client is the right-most untrusted X-Forwarded-For address.
    const seen = JSON.parse((await get(agent, v4, { headers: { 'x-forwarded-for': '198.51.100.1, 203.0.113.9' } })).body).headers;
    assert.equal(seen['x-forwarded-for'], '198.51.100.1, 203.0.113.9, 127.0.0.1', 'a trusted proxy’s list is kept and the peer appended');
    assert.equal(await s(v4, '203.0.113.9'), 200);
    assert.equal(await s(v4, '203.0.113.9'), 429, 'counted as 203.0.113.9, which has used its 2');
    assert.deepEqual([await s(v4, '203.0.113.50'), await s(v4, '203.0.113.50'), await s(v4, '203.0.113.50')], [200, 200, 429]);
    // ::1 is not trusted: its X-Forwarded-For is ignored, so it stays limited.
    assert.equal(await s(v6, '203.0.113.77'), 429);
  });

  test('deny beats allow, and a client outside a non-empty allow list is refused with 403', async (t) => {
    const [b] = await startBackends(t, 1);
    const velocity = await startInProcess(
      t,
      `listen: ["127.0.0.1:0", "[::1]:0"]
admin: { enabled: false }
ip_filter: { allow: ["127.0.0.0/8"] }
services:
  - name: open
    hosts: [open.test]
    servers: [${b?.url}]
  - name: closed
    hosts: [closed.test]
    ip_filter: { allow: ["127.0.0.1"], deny: ["127.0.0.1/32"] }
    servers: [${b?.url}]
`,
    );
    const agent = testAgent(t);
    const v4 = `http://127.0.0.1:${velocity.addresses[0]?.port}/`;
    const v6 = `http://[::1]:${velocity.addresses[1]?.port}/`;
    assert.equal((await get(agent, v4, { headers: { host: 'open.test' } })).status, 200);
    const denied = await get(agent, v4, { headers: { host: 'closed.test' } });
    assert.equal(denied.status, 403);
    assert.equal(denied.headers['x-velocity-error'], 'IP_DENIED');
    assert.equal((await get(agent, v6, { headers: { host: 'open.test' } })).status, 403, '::1 is outside the global allow list');
  });

  test('auto-ban blocks a client that keeps exceeding a limit, and the ban expires', async (t) => {
    const [b] = await startBackends(t, 1);
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
rate_limits:
  - { name: strict, rate: 1/m, burst: 1, ban: { after: 2, window: 10s, duration: 700ms } }
services:
  - name: app
    servers: [${b?.url}]
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const decisions: (string | undefined)[] = [];
    velocity.observe((r) => decisions.push(r.decision));
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await get(agent, url)).status);
    assert.deepEqual(statuses, [200, 429, 429, 429, 403]);
    assert.equal(velocity.blocklist.list()[0]?.cidr, '127.0.0.1');
    await delay(50);
    assert.equal(decisions.at(-1), 'banned');
    await delay(800);
    assert.equal(velocity.blocklist.list().length, 0, 'the ban expired');
    assert.equal((await get(agent, url)).status, 429, 'back to the rate limit, no longer banned');
  });
});

describe('shared through Redis', () => {
  const sharedYaml = (backend: string, redisUrl: string) => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: ${TOKEN} }
state: { store: redis, url: "${redisUrl}", on_failure: open }
rate_limits:
  - { name: shared, rate: 1/m, burst: 20 }
services:
  - name: app
    servers: [${backend}]
`;

  test('three instances allow one limit together, share the blocklist within a second, and survive Redis going away', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const [b] = await startBackends(t, 1);
    const instances = await Promise.all([0, 1, 2].map(() => startVelocityProcess(t, sharedYaml(b?.url as string, redis.url))));
    const admins = await Promise.all(instances.map(async (v) => Number((await v.logs.waitFor(/"admin":"127\.0\.0\.1:(\d+)"/))[1])));
    // Until an instance first reaches Redis it counts locally (fail-open); wait for all three.
    await Promise.all(instances.map((v) => v.logs.waitFor(/redis connected/, 10_000)));
    const agent = testAgent(t);
    // 60 requests spread over the three: the shared limit lets 20 through in all.
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => get(agent, `${instances[i % 3]?.url}/`)));
    const allowed = results.filter((r) => r.status === 200).length;
    assert.equal(allowed, 20, 'combined allowed count equals one limit (rate 1/m, so no refill during the test)');

    // A blocklist entry added on one instance blocks on the others within a second.
    const added = await request(`http://127.0.0.1:${admins[0]}/api/v1/blocklist`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ cidr: '127.0.0.1', ttl: '30s' }),
    });
    assert.equal(added.statusCode, 201);
    await added.body.dump();
    const propagation = await eventually(async () => (await get(agent, `${instances[2]?.url}/`)).status === 403, 1_000, 'blocked on another instance');
    const list = await request(`http://127.0.0.1:${admins[1]}/api/v1/blocklist`);
    assert.equal(((await list.body.json()) as { entries: { cidr: string }[] }).entries[0]?.cidr, '127.0.0.1');
    const removed = await request(`http://127.0.0.1:${admins[1]}/api/v1/blocklist/127.0.0.1`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(removed.statusCode, 200);
    await removed.body.dump();
    await eventually(async () => (await get(agent, `${instances[0]?.url}/`)).status === 429, 1_000, 'unblocked everywhere');

    // Redis goes away: no request errors (fail-open to the local limiter); it comes back by itself.
    await redis.stop();
    const during = await Promise.all(Array.from({ length: 30 }, (_, i) => get(agent, `${instances[i % 3]?.url}/`)));
    assert.ok(
      during.every((r) => r.status === 200 || r.status === 429),
      during.map((r) => r.status).join(','),
    );
    assert.ok(
      during.some((r) => r.status === 200),
      'local fallback limits start fresh on each instance',
    );
    await instances[0]?.logs.waitFor(/redis unreachable/, 5_000);
    await redis.start();
    await instances[0]?.logs.waitFor(/redis reachable again/, 10_000);
    console.log(`traffic: blocklist propagated in ${propagation} ms`);
  });
});
