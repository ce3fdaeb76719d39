/** Rate limits, IP filters and bans end to end on one Velocity with its local state (shared mode: traffic-shared.test.ts). */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';
import { delay, get, startApp, startBackends, startInProcess, testAgent } from '../support/velocity.ts';

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
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: 8 }, () => get(agent, url)));
    const burstSeconds = (performance.now() - started) / 1000;
    const passed = results.filter((r) => r.status === 200).length;
    // The bucket holds 5 and gains one token a second: each whole second the 8 requests take (a loaded
    // machine has made them take over one) lets one more pass. On a quiet machine exactly 5 pass.
    assert.ok(passed >= 5 && passed <= 5 + Math.floor(burstSeconds), `${passed} of 8 passed in ${burstSeconds.toFixed(2)} s`);
    assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200, 429]));
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
    // A second token needs two seconds since the burst emptied the bucket (it was emptied after `started`).
    const second = await get(agent, url);
    assert.ok(second.status === 429 || performance.now() - started >= 2_000, `second request after the pause: ${second.status}`);
  });

  test('per-endpoint rules count independently, and header keys separate API clients', async (t) => {
    const [b] = await startBackends(t, 1);
    const velocity = await startApp(
      t,
      `servers: [${b?.url}]
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
    // An IPv6 client behind the trusted proxy, spelled two ways: one client.
    assert.deepEqual([await s(v4, '2001:db8::7'), await s(v4, '2001:DB8:0::7'), await s(v4, '[2001:db8::7]:4711')], [200, 200, 429]);
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

  test('the dynamic blocklist blocks and unblocks at once, and refusals count in the service’s metrics', async (t) => {
    const [b] = await startBackends(t, 1);
    const velocity = await startInProcess(
      t,
      `listen: ["127.0.0.1:0", "[::1]:0"]
admin: { listen: "127.0.0.1:0" }
rate_limits:
  - { name: tiny, paths: ["/tiny"], rate: 1/m, burst: 1 }
services:
  - name: app
    servers: [${b?.url}]
`,
    );
    const agent = testAgent(t);
    const v4 = `http://127.0.0.1:${velocity.addresses[0]?.port}`;
    const v6 = `http://[::1]:${velocity.addresses[1]?.port}`;
    const decisions: (string | undefined)[] = [];
    velocity.observe((r) => decisions.push(r.decision));
    await velocity.blocklist.add('::1', 60_000, 'testing');
    assert.equal((await get(agent, `${v6}/`)).status, 403, '::1 blocked');
    assert.equal((await get(agent, `${v4}/`)).status, 200, '127.0.0.1 is not');
    await velocity.blocklist.add('127.0.0.0/8');
    assert.equal((await get(agent, `${v4}/`)).status, 403);
    assert.deepEqual(
      velocity.blocklist.list().map((e) => [e.cidr, e.source, e.expiresAt === null]),
      [
        ['::1', 'operator', false],
        ['127.0.0.0/8', 'operator', true],
      ],
    );
    assert.equal(await velocity.blocklist.remove('127.0.0.1/8'), true, 'removed by another spelling of the range');
    assert.equal(await velocity.blocklist.remove('::1'), true);
    assert.equal((await get(agent, `${v4}/`)).status, 200);
    assert.equal((await get(agent, `${v6}/`)).status, 200);
    assert.deepEqual([(await get(agent, `${v4}/tiny`)).status, (await get(agent, `${v4}/tiny`)).status], [200, 429]);
    await delay(50);
    assert.deepEqual(
      decisions.filter((d) => d !== undefined),
      ['blocked', 'blocked', 'rate-limited'],
    );
    const metrics = (await get(agent, `http://127.0.0.1:${velocity.adminAddress?.port}/metrics`)).body;
    assert.match(metrics, /^velocity_rate_limited_total\{service="app"\} 1$/m);
    assert.match(metrics, /^velocity_denied_total\{service="app"\} 2$/m);
  });
});
