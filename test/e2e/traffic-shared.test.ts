/**
 * Shared traffic control: three real Velocity processes against one real
 * redis-server count one limit together, share the blocklist and bans, and keep
 * serving — on their local limiters — while Redis is down.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { type RedisServer, startRedis } from '../support/redis.ts';
import { ADMIN_TOKEN, adminCall, type SharedInstance, startSharedInstances } from '../support/shared-instances.ts';
import { eventually, get, load, startBackends, startInProcess, testAgent } from '../support/velocity.ts';

// A generous command timeout: on a loaded machine a slow (not dead) Redis must not send an instance
// to its local fallback in the middle of the shared-count checks. A stopped Redis is noticed at once.
const sharedYaml = (backend: string, redisUrl: string) => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: ${ADMIN_TOKEN} }
state: { store: redis, url: "${redisUrl}", on_failure: open, timeout: 3s }
rate_limits:
  - { name: count, paths: ["/count"], rate: 1/m, burst: 20 }
  - { name: steady, paths: ["/steady"], rate: 20/s, burst: 5 }
  - { name: keyed, paths: ["/keyed"], key: ["header:x-api-key"], rate: 1/m, burst: 1000 }
  - { name: banning, paths: ["/ban"], rate: 1/m, burst: 1, ban: { after: 2, window: 1m, duration: 2s } }
  - { name: outage, paths: ["/outage"], rate: 1/m, burst: 4 }
services:
  - name: app
    servers: [${backend}]
`;

async function startInstances(t: Parameters<typeof startBackends>[0], count: number, redis: RedisServer): Promise<SharedInstance[]> {
  const [backend] = await startBackends(t, 1);
  return startSharedInstances(t, sharedYaml(backend?.url as string, redis.url), count);
}

describe('shared through Redis', () => {
  test('three instances allow one limit together, share the blocklist and bans within a second, and survive Redis going away', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const instances = await startInstances(t, 3, redis);
    const urls = instances.map((i) => i.process.url);
    const agent = testAgent(t);
    const spread = (path: string, total: number, headers: Record<string, string> = {}) =>
      load(total, 12, (i) => get(agent, `${urls[i % urls.length]}${path}`, { headers }).then((r) => r.status));
    const allowed = (statuses: number[]) => statuses.filter((s) => s === 200).length;

    // One burst, three doors: 60 requests spread over the instances, 20 allowed in all (no refill at 1/m).
    assert.equal(allowed(await spread('/count', 60)), 20, 'combined allowed count equals one limit');

    // The steady rate, shared: over a bounded run the three together stay within burst + rate × elapsed
    // (+1 for the request in flight at each end); three separate limiters would allow about three times that.
    const started = performance.now();
    const steady = await load(600, 12, (i) => get(agent, `${urls[i % 3]}/steady`).then((r) => ({ status: r.status, at: performance.now() })));
    const elapsedS = (Math.max(...steady.map((r) => r.at)) - started) / 1000;
    const steadyAllowed = steady.filter((r) => r.status === 200).length;
    const bound = 5 + 20 * elapsedS + 1;
    console.log(`traffic-shared: steady 20/s burst 5 over ${elapsedS.toFixed(2)} s: ${steadyAllowed} allowed across 3 instances (bound ${bound.toFixed(1)})`);
    const fellBack = instances.map((i) => /redis unreachable/.test(i.process.logs.output()));
    assert.ok(steadyAllowed <= bound, `${steadyAllowed} allowed > ${bound.toFixed(1)} (fell back to local: ${fellBack.join(', ')})`);
    assert.ok(steadyAllowed >= Math.min(20 * elapsedS * 0.5, 540), `${steadyAllowed} allowed: the limiter refused far too much`);
    assert.ok(
      steady.every((r) => r.status === 200 || r.status === 429),
      'only 200 and 429',
    );

    // Keys built from client input stay small and expire: every limiter key in Redis has a bounded TTL.
    await get(agent, `${urls[0]}/keyed`, { headers: { 'x-api-key': 'k'.repeat(8_000) } });
    const inspect = new Redis(redis.url, { lazyConnect: true });
    t.after(() => inspect.disconnect());
    await inspect.connect();
    const keys = await inspect.keys('velocity:rl:*');
    assert.ok(keys.length >= 3, keys.join(' '));
    for (const key of keys) {
      assert.ok(key.length < 60, `key ${key.slice(0, 80)}… is ${key.length} bytes`);
      const ttl = await inspect.pttl(key);
      assert.ok(ttl > 0 && ttl <= 24 * 3600_000, `${key} has TTL ${ttl}`);
    }
    inspect.disconnect();

    // A blocklist entry added on one instance blocks on the others within a second, and its removal too.
    const added = await adminCall(instances[0]?.admin as string, 'POST', '/api/v1/blocklist', { cidr: '127.0.0.1', ttl: '30s', reason: 'test' });
    assert.equal(added.status, 201);
    const propagation = await Promise.all(urls.slice(1).map((u) => eventually(async () => (await get(agent, `${u}/`)).status === 403, 1_000, `blocked on ${u}`)));
    const listed = await adminCall(instances[2]?.admin as string, 'GET', '/api/v1/blocklist');
    assert.deepEqual(
      (listed.body.entries as { cidr: string; reason: string }[]).map((e) => [e.cidr, e.reason]),
      [['127.0.0.1', 'test']],
    );
    assert.equal((await adminCall(instances[1]?.admin as string, 'DELETE', '/api/v1/blocklist/127.0.0.1')).status, 200);
    await Promise.all(urls.map((u) => eventually(async () => (await get(agent, `${u}/`)).status === 200, 1_000, `unblocked on ${u}`)));
    console.log(`traffic-shared: blocklist add reached the other instances in ${propagation.join(', ')} ms`);

    // Auto-ban, shared: refusals on one instance ban the client on all of them, and the ban expires everywhere.
    const banStatuses = [];
    for (let i = 0; i < 4; i++) banStatuses.push((await get(agent, `${urls[0]}/ban`)).status);
    assert.deepEqual(banStatuses, [200, 429, 429, 429]);
    await Promise.all(urls.map((u) => eventually(async () => (await get(agent, `${u}/`)).status === 403, 1_000, `banned on ${u}`)));
    await Promise.all(urls.map((u) => eventually(async () => (await get(agent, `${u}/`)).status === 200, 4_000, `ban expired on ${u}`)));

    // Redis goes away: no request fails; each instance limits on its own table (4 each, 12 in all).
    await redis.stop();
    await Promise.all(instances.map((i) => i.process.logs.waitFor(/redis unreachable/, 5_000)));
    const during = await spread('/outage', 30);
    assert.deepEqual(
      during.filter((s) => s !== 200 && s !== 429),
      [],
      'no request errors while Redis is down',
    );
    assert.equal(allowed(during), 12, 'fail-open: the local fallback limit applies on each instance');
    // A change made while Redis is away applies on that instance at once and reaches the others later.
    const offline = await adminCall(instances[0]?.admin as string, 'POST', '/api/v1/blocklist', { cidr: '198.51.100.77', ttl: '1m', reason: 'offline' });
    assert.equal(offline.status, 201);

    // Redis comes back (empty): the instances reconnect by themselves and count together again.
    await redis.start();
    await Promise.all(instances.map((i) => i.process.logs.waitFor(/redis reachable again/, 10_000)));
    assert.equal(allowed(await spread('/outage', 30)), 4, 'shared again: one limit across the instances');
    const entries = async (admin: string) => ((await adminCall(admin, 'GET', '/api/v1/blocklist')).body.entries as { cidr: string }[]).map((e) => e.cidr);
    await eventually(async () => (await entries(instances[2]?.admin as string)).includes('198.51.100.77'), 5_000, 'the offline change was written and published');
    // Pub/sub is back too: a new entry reaches the other instances within a second.
    await adminCall(instances[1]?.admin as string, 'POST', '/api/v1/blocklist', { cidr: '2001:db8::/32', ttl: '1m' });
    await Promise.all([0, 2].map((i) => eventually(async () => (await entries(instances[i]?.admin as string)).includes('2001:db8::/32'), 1_000, `resubscribed on instance ${i}`)));
    for (const i of instances) assert.equal(i.process.logs.output().match(/redis unreachable/g)?.length, 1, 'the outage is logged once');
  });

  test('fail-closed refuses what the limits cover while Redis is down, and recovers', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const [backend] = await startBackends(t, 1);
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
state: { store: redis, url: "${redis.url}", on_failure: closed }
rate_limits:
  - { paths: ["/limited"], rate: 100/s }
services:
  - name: app
    servers: [${backend?.url}]
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}`;
    const agent = testAgent(t);
    const decisions: (string | undefined)[] = [];
    velocity.observe((r) => decisions.push(r.decision));
    assert.equal((await get(agent, `${url}/limited`)).status, 200);
    await redis.stop();
    const refused = await get(agent, `${url}/limited`);
    assert.equal(refused.status, 429);
    assert.equal(refused.headers['retry-after'], '1');
    assert.equal((await get(agent, `${url}/free`)).status, 200, 'what no rule covers is served');
    await eventually(() => decisions.includes('rate-limit-unavailable'), 1_000, 'decision logged');
    await redis.start();
    await eventually(async () => (await get(agent, `${url}/limited`)).status === 200, 10_000, 'served again once Redis is back');
  });
});
