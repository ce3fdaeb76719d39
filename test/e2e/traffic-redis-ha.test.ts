/**
 * Shared limits and the blocklist on highly available Redis: three real Velocity
 * processes against Redis Sentinel (the primary killed under load) and against a
 * three-master Redis Cluster, all real redis-server / redis-sentinel processes on
 * loopback ports.
 */
import assert from 'node:assert/strict';
import { describe, type TestContext, test } from 'node:test';
import { redisCli, startRedisCluster, startSentinelSet } from '../support/redis-ha.ts';
import { ADMIN_TOKEN, adminCall, type SharedInstance, startSharedInstances } from '../support/shared-instances.ts';
import { delay, eventually, get, load, startBackends, testAgent } from '../support/velocity.ts';

const PASSWORD = 'data-pw-0123';
const SENTINEL_PASSWORD = 'sentinel-pw-0123';

/** The rules both tests use: exact-count rules (no refill at 1/m) and one steady rate. */
const RULES = `rate_limits:
  - { name: before, paths: ["/before"], rate: 1/m, burst: 20 }
  - { name: after, paths: ["/after"], rate: 1/m, burst: 20 }
  - { name: steady, paths: ["/steady"], rate: 20/s, burst: 10 }
  - { name: keyed, paths: ["/keyed"], key: ["header:x-api-key"], rate: 1/m, burst: 5 }
`;

/** Instances sharing `state` (YAML flow text), in front of one backend. */
async function startInstances(t: TestContext, state: string, count = 3): Promise<SharedInstance[]> {
  const [backend] = await startBackends(t, 1);
  const yaml = `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: ${ADMIN_TOKEN} }
state: ${state}
${RULES}services:
  - name: app
    servers: [${backend?.url}]
`;
  return startSharedInstances(t, yaml, count);
}

const blocked = async (i: SharedInstance) => ((await adminCall(i.admin, 'GET', '/api/v1/blocklist')).body.entries as { cidr: string }[]).map((e) => e.cidr);

/** A process-wide counter from an instance's /metrics. */
async function metric(i: SharedInstance, name: string): Promise<number> {
  const text = (await adminCall(i.admin, 'GET', '/metrics')).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} is exposed`);
  return Number(line.split(' ')[1]);
}

/** `total` requests to `path` spread over the instances, 12 at a time; the count answered 200. */
async function allowedOf(t: TestContext, instances: SharedInstance[], path: string, total: number, headers: Record<string, string> = {}): Promise<number> {
  const agent = testAgent(t);
  const statuses = await load(total, 12, (i) => get(agent, `${instances[i % instances.length]?.process.url}${path}`, { headers }).then((r) => r.status));
  assert.deepEqual(
    statuses.filter((s) => s !== 200 && s !== 429),
    [],
    'only 200 and 429',
  );
  return statuses.filter((s) => s === 200).length;
}

/** Requests from 6 loops over the instances until stopped, capped in count and time; every answer and error kept. */
function backgroundLoad(t: TestContext, instances: SharedInstance[], path: string, limits = { requests: 40_000, ms: 120_000 }) {
  const agent = testAgent(t);
  const outcomes: { status: number | string; at: number }[] = [];
  const started = performance.now();
  const deadline = Date.now() + limits.ms;
  let stop = false;
  let sent = 0;
  const loop = async (n: number) => {
    while (!stop && sent < limits.requests && Date.now() < deadline) {
      const url = `${instances[sent++ % instances.length]?.process.url}${path}`;
      const status = await get(agent, url).then(
        (r) => r.status,
        (err: Error) => `${err.message} (loop ${n})`,
      );
      outcomes.push({ status, at: performance.now() });
      // At most ~50 requests a second per loop: load, not a flood, on a shared machine.
      await delay(20);
    }
  };
  const running = Promise.all(Array.from({ length: 6 }, (_, n) => loop(n)));
  return {
    outcomes,
    async finish() {
      stop = true;
      await running;
      return { elapsedS: (Math.max(...outcomes.map((o) => o.at)) - started) / 1000, hitCap: sent >= limits.requests || Date.now() >= deadline };
    },
  };
}

/** Every instance that logged losing Redis has logged finding it again. */
async function allReconnected(instances: SharedInstance[]): Promise<void> {
  const count = (i: SharedInstance, re: RegExp) => i.process.logs.output().match(re)?.length ?? 0;
  await eventually(() => instances.every((i) => count(i, /redis reachable again/g) >= count(i, /redis unreachable/g)), 60_000, 'every instance back on Redis');
}

describe('shared state on highly available Redis', () => {
  test('Sentinel: the primary killed under load → no failed request, a bounded and reported excess, exact limits and one blocklist again after', async (t) => {
    const set = await startSentinelSet(t, { password: PASSWORD, sentinelPassword: SENTINEL_PASSWORD });
    if (!set) return;
    const sentinels = set.sentinels.map((p) => `"127.0.0.1:${p}"`).join(', ');
    const instances = await startInstances(
      t,
      `{ store: redis, sentinels: [${sentinels}], master: ${set.master}, password: ${PASSWORD}, sentinel_password: ${SENTINEL_PASSWORD}, on_failure: open, timeout: 3s }`,
    );

    const shown = (await adminCall(instances[0]?.admin as string, 'GET', '/api/v1/config')).text;
    assert.equal(JSON.parse(shown).config.state.password, '(set)');
    assert.ok(![PASSWORD, SENTINEL_PASSWORD].some((pw) => shown.includes(pw)), 'the config API shows no password');

    // Through the sentinels, the three count one limit: 20 of 60 spread over them.
    assert.equal(await allowedOf(t, instances, '/before', 60), 20, 'one shared limit before the failover');
    assert.equal((await adminCall(instances[0]?.admin as string, 'POST', '/api/v1/blocklist', { cidr: '198.51.100.1', ttl: '10m' })).status, 201);
    await Promise.all(instances.map((i) => eventually(async () => (await blocked(i)).includes('198.51.100.1'), 30_000, 'the first entry everywhere')));

    // Bounded load on a shared 20/s limit; the primary is killed (by PID) in the middle of it.
    const run = backgroundLoad(t, instances, '/steady');
    await eventually(() => run.outcomes.length >= 100, 60_000, 'load running');
    const oldPort = set.primary.port;
    assert.equal(await set.primaryPort(), oldPort);
    const killedAt = performance.now();
    await set.primary.stop();
    // A change made during the failover, on an instance that may not reach Redis at that moment.
    assert.equal((await adminCall(instances[1]?.admin as string, 'POST', '/api/v1/blocklist', { cidr: '198.51.100.2', ttl: '10m' })).status, 201);
    const newPort = await set.failedOver(oldPort, 90_000);
    const promotedS = (performance.now() - killedAt) / 1000;
    await allReconnected(instances);
    const reconnectedS = (performance.now() - killedAt) / 1000;
    // Two more seconds of load on the new primary, so the run ends counting together again.
    await delay(2_000);
    const { elapsedS, hitCap } = await run.finish();

    const failed = run.outcomes.filter((o) => o.status !== 200 && o.status !== 429);
    assert.deepEqual(failed, [], 'no request failed during the failover');
    assert.equal(hitCap, false, 'the run ended by itself, not at its cap');
    const allowed = run.outcomes.filter((o) => o.status === 200).length;
    const exact = 10 + 20 * elapsedS + 1;
    const localAllowed = (await Promise.all(instances.map((i) => metric(i, 'velocity_state_store_fallback_allowed_total')))).reduce((a, b) => a + b, 0);
    const outages = (await Promise.all(instances.map((i) => metric(i, 'velocity_state_store_outages_total')))).reduce((a, b) => a + b, 0);
    t.diagnostic(
      `sentinel failover ${oldPort} → ${newPort}: promoted after ${promotedS.toFixed(1)} s, every instance back after ${reconnectedS.toFixed(1)} s; ${run.outcomes.length} requests over ${elapsedS.toFixed(1)} s, 0 failed; ${allowed} allowed at 20/s burst 10 ` +
        `(exact bound ${exact.toFixed(0)}, extra ${Math.max(0, allowed - Math.floor(exact))}); fallback_allowed_total ${localAllowed}, outages ${outages}`,
    );
    assert.ok(localAllowed > 0, 'requests decided on the local count during the failover are counted');
    assert.ok(outages >= 3, 'each instance counted the outage');

    // Exact again: a fresh limit is shared by all three through the new primary.
    assert.equal(await allowedOf(t, instances, '/after', 60), 20, 'one shared limit after the failover');
    // One blocklist again: what was there, the change made during the failover, and a new change, everywhere.
    assert.equal((await adminCall(instances[2]?.admin as string, 'POST', '/api/v1/blocklist', { cidr: '198.51.100.3', ttl: '10m' })).status, 201);
    for (const i of instances) {
      const has = async () => {
        const list = await blocked(i);
        return ['198.51.100.1', '198.51.100.2', '198.51.100.3'].every((c) => list.includes(c));
      };
      await eventually(has, 30_000, `every entry on ${i.admin}`).catch(async (err: Error) => {
        throw new Error(`${err.message}: it has ${(await blocked(i)).join(', ')}; its log:\n${i.process.logs.output().slice(-4000)}`);
      });
    }
    for (const i of instances) assert.ok(![PASSWORD, SENTINEL_PASSWORD].some((pw) => i.process.logs.output().includes(pw)), 'no password in the log');
    const keys = await redisCli(newPort, ['--scan', '--pattern', 'velocity:block:*'], PASSWORD);
    assert.deepEqual(keys.trim().split('\n').sort(), ['velocity:block:198.51.100.1', 'velocity:block:198.51.100.2', 'velocity:block:198.51.100.3']);
  });

  test('Cluster: limits count once across three masters, and the blocklist spread over them is read whole', async (t) => {
    const cluster = await startRedisCluster(t);
    if (!cluster) return;
    const nodes = cluster.ports.map((p) => `"127.0.0.1:${p}"`).join(', ');
    const state = `{ store: redis, cluster: [${nodes}], on_failure: open, timeout: 3s }`;
    const instances = await startInstances(t, state);

    assert.equal(await allowedOf(t, instances, '/before', 60), 20, 'one shared limit on the cluster');
    // Eight client keys land in slots all over the cluster; each still gets exactly its burst of 5.
    const keys = Array.from({ length: 8 }, (_, n) => `client-${n}`);
    const perKey = await Promise.all(keys.map((k) => allowedOf(t, instances, '/keyed', 15, { 'x-api-key': k })));
    assert.deepEqual(perKey, Array(8).fill(5), 'every key limited once across the instances');
    const keysPerMaster = await Promise.all(cluster.ports.map(async (p) => (await redisCli(p, ['--scan', '--pattern', 'velocity:rl:*'])).trim().split('\n').filter(Boolean)));
    assert.ok(keysPerMaster.filter((keys) => keys.length > 0).length >= 2, `limiter keys on several masters: ${JSON.stringify(keysPerMaster)}`);

    // Twelve entries from different instances reach every instance.
    const cidrs = Array.from({ length: 12 }, (_, n) => `203.0.113.${n + 1}`);
    for (const [n, cidr] of cidrs.entries()) {
      assert.equal((await adminCall(instances[n % 3]?.admin as string, 'POST', '/api/v1/blocklist', { cidr, ttl: '10m' })).status, 201);
    }
    for (const i of instances) await eventually(async () => (await blocked(i)).length === 12, 30_000, `12 entries on ${i.admin}`);
    const blockKeys = await Promise.all(cluster.ports.map(async (p) => (await redisCli(p, ['--scan', '--pattern', 'velocity:block:*'])).trim().split('\n').filter(Boolean).length));
    assert.ok(blockKeys.filter((n) => n > 0).length >= 2, `blocklist keys on several masters (${blockKeys.join(', ')})`);

    // A fourth instance starting later reads the whole list from every master.
    const [late] = await startInstances(t, state, 1);
    await eventually(async () => (await blocked(late as SharedInstance)).sort().join() === [...cidrs].sort().join(), 30_000, 'the late instance has every entry');
    const agent = testAgent(t);
    assert.equal((await get(agent, `${late?.process.url}/after`)).status, 200, 'the late instance serves');
  });
});
