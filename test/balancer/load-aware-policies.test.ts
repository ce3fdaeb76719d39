/** random-two-choices and least-response-time on their own: weights, load and latency decide. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { leastResponseTime } from '../../src/balancer/least-response-time.ts';
import { localPolicyState } from '../../src/balancer/local-state.ts';
import type { BalancedServer, PickRequest } from '../../src/balancer/policy.ts';
import { randomTwoChoices } from '../../src/balancer/random-two-choices.ts';

const request: PickRequest = { clientIp: '127.0.0.1', method: 'GET', url: '/', header: () => undefined, cookie: () => undefined };
const all = () => true;
const server = (id: string, fields: Partial<BalancedServer> = {}): BalancedServer => ({ id, slot: 0, weight: 1, inFlight: 0, latency: 0, ...fields });

function seeded(seed: number): () => number {
  let x = seed;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

const tally = (picks: (BalancedServer | undefined)[]) => {
  const counts = new Map<string, number>();
  for (const s of picks) counts.set(s?.id ?? '-', (counts.get(s?.id ?? '-') ?? 0) + 1);
  return counts;
};

describe('random-two-choices', () => {
  test('with equal load, servers are drawn in proportion to their weights (within 2%)', () => {
    const policy = randomTwoChoices({}, { shared: localPolicyState(), random: seeded(1), now: Date.now });
    const list = [server('a', { weight: 1 }), server('b', { weight: 2 }), server('c', { weight: 3 })];
    const n = 30_000;
    const counts = tally(Array.from({ length: n }, () => policy.pick(list, request, all)));
    for (const s of list) assert.ok(Math.abs((counts.get(s.id) ?? 0) / n - s.weight / 6) < 0.02, `${s.id}: ${counts.get(s.id)}`);
  });

  test('the more loaded of the two draws loses: the most loaded server is never picked', () => {
    const policy = randomTwoChoices({}, { shared: localPolicyState(), random: seeded(2), now: Date.now });
    const list = [server('idle'), server('busy', { inFlight: 9 }), server('some', { inFlight: 2 })];
    const counts = tally(Array.from({ length: 3000 }, () => policy.pick(list, request, all)));
    assert.equal(counts.get('busy'), undefined);
    assert.ok((counts.get('idle') ?? 0) > (counts.get('some') ?? 0));
  });

  test('load is compared per unit of weight', () => {
    const policy = randomTwoChoices({}, { shared: localPolicyState(), random: seeded(3), now: Date.now });
    // 6 in flight on weight 4 (1.5 each) beats 2 on weight 1.
    const list = [server('big', { weight: 4, inFlight: 6 }), server('small', { weight: 1, inFlight: 2 })];
    for (let i = 0; i < 50; i++) assert.equal(policy.pick(list, request, all)?.id, 'big');
  });
});

describe('least-response-time', () => {
  const make = () => leastResponseTime({}, { shared: localPolicyState(), random: Math.random, now: Date.now });

  test('picks the lowest peak-EWMA latency × (in-flight + 1) per weight', () => {
    const policy = make();
    // 100 × 1 = 100 against 10 × 6 = 60: the fast server wins despite its queue.
    assert.equal(policy.pick([server('slow', { latency: 100 }), server('fast', { latency: 10, inFlight: 5 })], request, all)?.id, 'fast');
    // 10 × 12 = 120 against 100: now the slow one is cheaper.
    assert.equal(policy.pick([server('slow', { latency: 100 }), server('fast', { latency: 10, inFlight: 11 })], request, all)?.id, 'slow');
    // Weight divides the cost: 100 / 4 = 25 against 30.
    assert.equal(policy.pick([server('slow', { latency: 100, weight: 4 }), server('fast', { latency: 30 })], request, all)?.id, 'slow');
  });

  test('a server not measured yet counts as the fastest measured one, so it gets tried', () => {
    const policy = make();
    const list = [server('measured', { latency: 20, inFlight: 1 }), server('new')];
    assert.equal(policy.pick(list, request, all)?.id, 'new');
  });

  test('equal servers share in rotation rather than the first taking every tie', () => {
    const policy = make();
    const list = [server('a', { latency: 5 }), server('b', { latency: 5 }), server('c', { latency: 5 })];
    const counts = tally(Array.from({ length: 30 }, () => policy.pick(list, request, all)));
    assert.deepEqual([...counts.values()], [10, 10, 10]);
  });
});
