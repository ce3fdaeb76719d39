/** Property tests of the consistent hash: spread follows weights, few keys move, same mapping everywhere. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { HashRing } from '../../src/balancer/hash-ring.ts';
import type { BalancedServer } from '../../src/balancer/policy.ts';

const servers = (weights: number[], offset = 0): BalancedServer[] => weights.map((weight, i) => ({ id: `10.0.0.${i + offset}:8080`, slot: i, weight, inFlight: 0, latency: 0 }));
const KEYS = Array.from({ length: 20_000 }, (_, i) => `client-${i}-${(i * 2654435761) >>> 0}`);
const all = () => true;

function assignment(ring: HashRing<BalancedServer>): Map<string, string> {
  return new Map(KEYS.map((k) => [k, ring.lookup(k, all)?.id as string]));
}

describe('consistent hash ring', () => {
  test('keys spread within 20% of each server’s weighted share (400 points per weight unit)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 2, maxLength: 8 }), (weights) => {
        const list = servers(weights);
        const counts = new Map<string, number>();
        for (const id of assignment(new HashRing(list)).values()) counts.set(id, (counts.get(id) ?? 0) + 1);
        const total = weights.reduce((a, b) => a + b, 0);
        for (const [i, s] of list.entries()) {
          const expected = (KEYS.length * (weights[i] as number)) / total;
          const got = counts.get(s.id) ?? 0;
          assert.ok(Math.abs(got - expected) / expected < 0.2, `${s.id} weight ${weights[i]}: ${got} keys, expected ~${Math.round(expected)}`);
        }
      }),
      { numRuns: 25 },
    );
  });

  test('removing one of N servers remaps only its keys (≤ 1/N + 0.05 of all keys)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 10 }), fc.nat(), (n, pick) => {
        const list = servers(Array(n).fill(1));
        const before = assignment(new HashRing(list));
        const removed = list[pick % n] as BalancedServer;
        const after = assignment(new HashRing(list.filter((s) => s !== removed)));
        let moved = 0;
        for (const [k, id] of before) {
          if (after.get(k) !== id) {
            moved++;
            assert.equal(id, removed.id, 'only keys of the removed server move');
          }
        }
        assert.ok(moved / KEYS.length <= 1 / n + 0.05, `${moved / KEYS.length} moved for N=${n}`);
      }),
      { numRuns: 20 },
    );
  });

  test('adding a server moves keys only onto it', () => {
    const list = servers([1, 1, 1, 1]);
    const before = assignment(new HashRing(list));
    const added = servers([1], 9)[0] as BalancedServer;
    const after = assignment(new HashRing([...list, added]));
    let moved = 0;
    for (const [k, id] of before) {
      if (after.get(k) !== id) {
        moved++;
        assert.equal(after.get(k), added.id);
      }
    }
    assert.ok(moved / KEYS.length <= 1 / 5 + 0.05, `${moved / KEYS.length} moved`);
  });

  test('an unusable server’s keys fall to the next server deterministically and come back when it recovers', () => {
    const list = servers([1, 1, 1]);
    const ring = new HashRing(list);
    const down = list[1] as BalancedServer;
    const usable = (s: BalancedServer) => s !== down;
    for (const k of KEYS.slice(0, 2000)) {
      const normal = ring.lookup(k, all);
      const failover = ring.lookup(k, usable);
      if (normal !== down) assert.equal(failover, normal, 'keys of healthy servers stay put');
      else assert.equal(failover, ring.lookup(k, usable), 'the fallback is the same every time');
    }
    assert.deepEqual(assignment(ring), assignment(new HashRing(list)), 'recovered: the original mapping');
  });

  test('the mapping is the same whatever order the servers come in (threads, restarts, instances agree)', () => {
    const list = servers([2, 1, 3]);
    assert.deepEqual(assignment(new HashRing(list)), assignment(new HashRing([...list].reverse())));
  });
});
