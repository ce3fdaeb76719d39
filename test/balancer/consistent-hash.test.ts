/**
 * Property tests of the consistent hash over many server sets and key sets: the
 * spread follows weights, few keys move when a server goes or comes, and the
 * mapping is the same on every thread, restart and instance. The measured figures
 * are printed as test diagnostics.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { hash32 } from '../../src/balancer/hash.ts';
import { HashRing, MAX_POINTS } from '../../src/balancer/hash-ring.ts';
import { localPolicyState } from '../../src/balancer/local-state.ts';
import type { BalancedServer, PickRequest } from '../../src/balancer/policy.ts';
import { policyFactory, policyOptionsSchema } from '../../src/balancer/registry.ts';

const KEY_COUNT = 20_000;
/**
 * Distribution tolerance: every server's share of keys within 15% of its weighted share.
 * With 1000 ring points per unit of weight a share varies by ~3% (1/√1000), plus the
 * sampling noise of 20,000 keys; 15% is over 4 standard deviations of both together.
 */
const SPREAD_TOLERANCE = 0.15;
/** Remap tolerance for N equal servers: at most 1/N + 3% of all keys move. */
const REMAP_EPSILON = 0.03;
/**
 * The statistical properties (spread and remap bounds) draw their 20-30 random server
 * sets from a fixed seed, so a run is reproducible and never fails by chance; the exact
 * properties (which keys move, determinism) draw new sets on every run.
 */
const STATISTICAL_SEED = 20_261_124;

const keysFor = (seed: number): string[] => Array.from({ length: KEY_COUNT }, (_, i) => `${seed}:client-${i}`);
const all = () => true;

const serverId = fc.oneof(
  fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([ip, port]) => `${ip}:${port}`),
  fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/),
);
/** A server set: unique ids (as Velocity derives them: name, else host:port), weights 1..maxWeight. */
const serverSet = (minLength: number, maxLength: number, maxWeight = 5) =>
  fc
    .uniqueArray(fc.record({ id: serverId, weight: fc.integer({ min: 1, max: maxWeight }) }), { selector: (s) => s.id, minLength, maxLength })
    .map((specs): BalancedServer[] => specs.map((s, slot) => ({ ...s, slot, inFlight: 0, latency: 0 })));

function assign(ring: HashRing<BalancedServer>, keys: readonly string[], usable: (s: BalancedServer) => boolean = all): string[] {
  return keys.map((k) => ring.lookup(k, usable)?.id as string);
}

/** Fraction of keys whose server differs, and whether every moved key satisfied `allowed`. */
function moved(before: string[], after: string[], allowed: (from: string, to: string) => boolean): { fraction: number; onlyAllowed: boolean } {
  let count = 0;
  let onlyAllowed = true;
  for (const [i, from] of before.entries()) {
    const to = after[i] as string;
    if (from === to) continue;
    count++;
    if (!allowed(from, to)) onlyAllowed = false;
  }
  return { fraction: count / before.length, onlyAllowed };
}

const share = (list: readonly BalancedServer[], s: BalancedServer) => s.weight / list.reduce((sum, x) => sum + x.weight, 0);
const pct = (x: number) => `${(x * 100).toFixed(2)}%`;

describe('consistent hash ring', () => {
  test(`every server gets its weighted share of keys within ${SPREAD_TOLERANCE * 100}% (max deviation, 30 server sets × ${KEY_COUNT} keys)`, (t) => {
    let worst = 0;
    fc.assert(
      fc.property(serverSet(2, 10), fc.integer(), (list, seed) => {
        const counts = new Map<string, number>();
        for (const id of assign(new HashRing(list), keysFor(seed))) counts.set(id, (counts.get(id) ?? 0) + 1);
        for (const s of list) {
          const expected = KEY_COUNT * share(list, s);
          const got = counts.get(s.id) ?? 0;
          const deviation = Math.abs(got - expected) / expected;
          worst = Math.max(worst, deviation);
          assert.ok(deviation <= SPREAD_TOLERANCE, `${s.id} (weight ${s.weight} of ${list.length}): ${got} keys, expected ~${Math.round(expected)}`);
        }
      }),
      { numRuns: 30, seed: STATISTICAL_SEED },
    );
    t.diagnostic(`measured: worst deviation of a server's share from its weighted share ${pct(worst)}`);
  });

  test('removing a server moves exactly the keys it had: all of them, and no others', (t) => {
    let worstExcess = 0;
    fc.assert(
      fc.property(serverSet(2, 10), fc.nat(), fc.integer(), (list, pick, seed) => {
        const keys = keysFor(seed);
        const removed = list[pick % list.length] as BalancedServer;
        const before = assign(new HashRing(list), keys);
        const after = assign(new HashRing(list.filter((s) => s !== removed)), keys);
        const { fraction, onlyAllowed } = moved(before, after, (from) => from === removed.id);
        assert.ok(onlyAllowed, 'only keys of the removed server move');
        assert.equal(fraction, before.filter((id) => id === removed.id).length / keys.length, 'all keys of the removed server move');
        worstExcess = Math.max(worstExcess, fraction - share(list, removed));
      }),
      { numRuns: 25 },
    );
    t.diagnostic(`measured: the moved fraction exceeded the removed server's weighted share by at most ${pct(worstExcess)}`);
  });

  test('adding a server moves exactly the keys it gets: all from other servers onto it, and no others', () => {
    fc.assert(
      fc.property(serverSet(2, 11), fc.integer(), (list, seed) => {
        const keys = keysFor(seed);
        const added = list[list.length - 1] as BalancedServer;
        const before = assign(new HashRing(list.slice(0, -1)), keys);
        const after = assign(new HashRing(list), keys);
        const { fraction, onlyAllowed } = moved(before, after, (_from, to) => to === added.id);
        assert.ok(onlyAllowed, 'keys move only onto the added server');
        assert.equal(fraction, after.filter((id) => id === added.id).length / keys.length);
      }),
      { numRuns: 25 },
    );
  });

  test(`with N equal servers, removing one moves ≤ 1/N + ${REMAP_EPSILON * 100}% of keys and adding one ≤ 1/(N+1) + ${REMAP_EPSILON * 100}%`, (t) => {
    const rows = new Map<number, string>();
    fc.assert(
      fc.property(serverSet(4, 21, 1), fc.integer(), (list, seed) => {
        const keys = keysFor(seed);
        const n = list.length - 1;
        const small = assign(new HashRing(list.slice(0, -1)), keys);
        const large = assign(new HashRing(list), keys);
        // Adding the last server to N, or removing it from N + 1: the same keys move.
        const { fraction } = moved(small, large, () => true);
        assert.ok(fraction <= 1 / (n + 1) + REMAP_EPSILON, `N=${n}: adding one moved ${pct(fraction)}`);
        const dropFirst = moved(small, assign(new HashRing(list.slice(1, -1)), keys), () => true).fraction;
        assert.ok(dropFirst <= 1 / n + REMAP_EPSILON, `N=${n}: removing one moved ${pct(dropFirst)}`);
        rows.set(n, `N=${n}: remove ${pct(dropFirst)} (1/N ${pct(1 / n)}), add ${pct(fraction)} (1/(N+1) ${pct(1 / (n + 1))})`);
      }),
      { numRuns: 20, seed: STATISTICAL_SEED },
    );
    t.diagnostic(
      `measured: ${[...rows.entries()]
        .sort(([a], [b]) => a - b)
        .map(([, row]) => row)
        .join('; ')}`,
    );
  });

  test('an unusable server’s keys fall to the next server deterministically, others stay, and all return when it recovers', () => {
    fc.assert(
      fc.property(serverSet(2, 8), fc.nat(), fc.integer(), (list, pick, seed) => {
        const keys = keysFor(seed).slice(0, 3000);
        const ring = new HashRing(list);
        const down = list[pick % list.length] as BalancedServer;
        const normal = assign(ring, keys);
        const failover = assign(ring, keys, (s) => s !== down);
        assert.deepEqual(
          failover,
          assign(ring, keys, (s) => s !== down),
          'the next choice is the same every time',
        );
        for (const [i, id] of normal.entries()) {
          if (id !== down.id) assert.equal(failover[i], id, 'keys of usable servers stay put');
          else assert.notEqual(failover[i], down.id);
        }
        // The next choice is where the key would go with the server removed: threads and instances agree on it.
        assert.deepEqual(failover, assign(new HashRing(list.filter((s) => s !== down)), keys));
        assert.deepEqual(assign(ring, keys), normal, 'recovered: the original mapping');
      }),
      { numRuns: 20 },
    );
  });

  test('no usable server: no choice', () => {
    const ring = new HashRing(fc.sample(serverSet(3, 3), { numRuns: 1, seed: 1 })[0] as BalancedServer[]);
    assert.equal(
      ring.lookup('k', () => false),
      undefined,
    );
    assert.equal(new HashRing([]).lookup('k', all), undefined);
  });

  test('the mapping is the same whatever order the servers come in', () => {
    fc.assert(
      fc.property(serverSet(2, 8), fc.integer(), (list, seed) => {
        const keys = keysFor(seed).slice(0, 2000);
        assert.deepEqual(assign(new HashRing(list), keys), assign(new HashRing([...list].reverse()), keys));
      }),
      { numRuns: 20 },
    );
  });

  test('the mapping is the same in another thread', async () => {
    const list = fc.sample(serverSet(5, 5), { numRuns: 1, seed: 42 })[0] as BalancedServer[];
    const keys = keysFor(42).slice(0, 5000);
    const worker = new Worker(new URL('./ring-worker.ts', import.meta.url), { workerData: { servers: list, keys } });
    const [fromWorker] = await once(worker, 'message');
    await worker.terminate();
    assert.deepEqual(fromWorker, assign(new HashRing(list), keys));
  });

  test('the mapping is pinned: the same on every restart, instance and version (changing it would remap every key on upgrade)', () => {
    assert.deepEqual(['', 'a', 'velocity', '127.0.0.1'].map(hash32), [2872998923, 444641715, 1741014875, 2377737407]);
    const list = ['10.0.0.1:8080', '10.0.0.2:8080', 'api-3'].map((id, slot) => ({ id, slot, weight: slot + 1, inFlight: 0, latency: 0 }));
    const ring = new HashRing(list);
    assert.deepEqual(
      Array.from({ length: 10 }, (_, i) => ring.lookup(`user-${i}`, all)?.id),
      ['10.0.0.2:8080', '10.0.0.2:8080', 'api-3', 'api-3', '10.0.0.2:8080', 'api-3', 'api-3', '10.0.0.2:8080', 'api-3', '10.0.0.1:8080'],
    );
  });

  test(`very large weights keep the ring within ${MAX_POINTS} points and still spread by weight`, () => {
    const list = [5000, 10000, 5000].map((weight, slot) => ({ id: `big-${slot}`, slot, weight, inFlight: 0, latency: 0 }));
    const ring = new HashRing(list);
    assert.ok(ring.size <= MAX_POINTS + list.length, `${ring.size} points`);
    const counts = new Map<string, number>();
    for (const id of assign(ring, keysFor(7))) counts.set(id, (counts.get(id) ?? 0) + 1);
    const middle = (counts.get('big-1') ?? 0) / KEY_COUNT;
    assert.ok(Math.abs(middle - 0.5) < 0.05, `weight 2 of 4 got ${pct(middle)}`);
  });
});

describe('hash policies', () => {
  const request = (fields: Partial<PickRequest>): PickRequest => ({ clientIp: '10.1.2.3', method: 'GET', url: '/', header: () => undefined, cookie: () => undefined, ...fields });
  const make = (name: string, options: Record<string, unknown> = {}) =>
    policyFactory(name)?.(policyOptionsSchema(name)?.parse(options) as Record<string, unknown>, { shared: localPolicyState(), random: Math.random, now: Date.now });

  test('a server in slow start (ramped weight) keeps its keys: hashing uses the configured weight', () => {
    const [policy, other] = [make('ip-hash'), make('ip-hash')];
    const steady = [1, 2, 3].map((w, slot) => ({ id: `s${slot}`, slot, weight: w, configuredWeight: w, inFlight: 0, latency: 0 }));
    const ramping = steady.map((s) => (s.slot === 1 ? { ...s, weight: 0.2 } : s));
    for (let i = 0; i < 300; i++) {
      const r = request({ clientIp: `10.0.${i >> 8}.${i & 255}` });
      assert.equal(policy?.pick(ramping, r, all)?.id, other?.pick(steady, r, all)?.id);
    }
  });

  test('a weight changed in place (admin API) rebuilds the ring: keys move only onto the heavier server', () => {
    const policy = make('url-hash');
    const weights = [1, 1, 1];
    const list = weights.map((_, slot) => ({
      id: `s${slot}`,
      slot,
      get weight() {
        return weights[slot] as number;
      },
      inFlight: 0,
      latency: 0,
    }));
    const paths = Array.from({ length: 3000 }, (_, i) => `/item/${i}`);
    const before = paths.map((url) => policy?.pick(list, request({ url }), all)?.id as string);
    weights[2] = 3;
    const after = paths.map((url) => policy?.pick(list, request({ url }), all)?.id as string);
    const { fraction, onlyAllowed } = moved(before, after, (_from, to) => to === 's2');
    assert.ok(onlyAllowed);
    assert.ok(fraction > 0.25 && fraction < 0.45, `${pct(fraction)} moved (share 1/3 → 3/5)`);
  });

  test('url-hash ignores the query unless query: true', () => {
    const list = fc.sample(serverSet(6, 6), { numRuns: 1, seed: 3 })[0] as BalancedServer[];
    const pathOnly = make('url-hash');
    const withQuery = make('url-hash', { query: true });
    const targets = (policy: typeof pathOnly) => new Set(Array.from({ length: 40 }, (_, i) => policy?.pick(list, request({ url: `/a?page=${i}` }), all)?.id));
    assert.equal(targets(pathOnly).size, 1);
    assert.ok(targets(withQuery).size > 1);
  });

  test('a request without the key goes to the fallback policy', () => {
    const list = fc.sample(serverSet(3, 3), { numRuns: 1, seed: 5 })[0] as BalancedServer[];
    for (const [name, options, keyed] of [
      ['header-hash', { header: 'x-user', fallback: 'round-robin' }, request({ header: (n) => (n === 'x-user' ? 'alice' : undefined) })],
      ['cookie-hash', { cookie: 'sid', fallback: 'least-connections' }, request({ cookie: (n) => (n === 'sid' ? 'abc' : undefined) })],
    ] as const) {
      const policy = make(name, options);
      assert.equal(new Set(Array.from({ length: 9 }, () => policy?.pick(list, keyed, all)?.id)).size, 1, `${name}: one server per key`);
      assert.equal(new Set(Array.from({ length: 9 }, () => policy?.pick(list, request({}), all)?.id)).size, 3, `${name}: no key, the fallback rotates`);
    }
  });
});
