import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { leastConnections } from '../../src/balancer/least-connections.ts';
import { localPolicyState } from '../../src/balancer/local-state.ts';
import type { BalancedServer, PickRequest, Policy, PolicyFactory } from '../../src/balancer/policy.ts';
import { roundRobin } from '../../src/balancer/round-robin.ts';
import { weightedRoundRobin } from '../../src/balancer/weighted-round-robin.ts';

interface FakeServer extends BalancedServer {
  weight: number;
  inFlight: number;
}

const servers = (weights: number[]): FakeServer[] => weights.map((weight, slot) => ({ id: String.fromCharCode(97 + slot), slot, weight, inFlight: 0, latency: 0 }));
const request: PickRequest = { clientIp: '127.0.0.1', method: 'GET', url: '/', header: () => undefined, cookie: () => undefined };
const make = (factory: PolicyFactory): Policy => factory({}, { shared: localPolicyState(), random: () => 0.5, now: () => 0 });
const sequence = (policy: Policy, list: FakeServer[], n: number, usable: (s: FakeServer) => boolean = () => true) =>
  Array.from({ length: n }, () => policy.pick(list, request, usable)?.id ?? '-').join(' ');

describe('round-robin', () => {
  test('visits every server in turn', () => {
    assert.equal(sequence(make(roundRobin), servers([1, 1, 1]), 6), 'a b c a b c');
  });

  test('skips unusable servers without breaking the rotation of the rest', () => {
    const list = servers([1, 1, 1]);
    assert.equal(
      sequence(make(roundRobin), list, 6, (s) => s.id !== 'b'),
      'a c c a c c',
    );
  });

  test('returns nothing when no server is usable', () => {
    assert.equal(
      make(roundRobin).pick(servers([1, 1]), request, () => false),
      undefined,
    );
  });
});

describe('weighted-round-robin', () => {
  test('5:1:1 interleaves as nginx does: a a b a c a a', () => {
    assert.equal(sequence(make(weightedRoundRobin), servers([5, 1, 1]), 7), 'a a b a c a a');
  });

  test('over a full cycle each server is chosen exactly its weight', () => {
    const policy = make(weightedRoundRobin);
    const list = servers([3, 2, 1, 4]);
    const counts = new Map<string, number>();
    for (let i = 0; i < 10 * 50; i++) {
      const id = policy.pick(list, request, () => true)?.id ?? '-';
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(counts), { a: 150, b: 100, c: 50, d: 200 });
  });

  test('an unusable server is left out and the others keep their ratio', () => {
    const policy = make(weightedRoundRobin);
    const list = servers([2, 5, 1]);
    const picks = sequence(policy, list, 30, (s) => s.id !== 'b').split(' ');
    assert.equal(picks.filter((p) => p === 'a').length, 20);
    assert.equal(picks.filter((p) => p === 'c').length, 10);
  });
});

describe('least-connections', () => {
  test('sends new requests to the server with the fewest in flight', () => {
    const list = servers([1, 1, 1]);
    (list[0] as FakeServer).inFlight = 4;
    (list[1] as FakeServer).inFlight = 1;
    (list[2] as FakeServer).inFlight = 3;
    assert.equal(make(leastConnections).pick(list, request, () => true)?.id, 'b');
  });

  test('weighs in-flight by weight: 4 on weight 4 is lighter than 2 on weight 1', () => {
    const list = servers([4, 1]);
    (list[0] as FakeServer).inFlight = 4;
    (list[1] as FakeServer).inFlight = 2;
    assert.equal(make(leastConnections).pick(list, request, () => true)?.id, 'a');
  });

  test('breaks ties in rotation so equal idle servers share evenly', () => {
    assert.equal(sequence(make(leastConnections), servers([1, 1, 1]), 6), 'a b c a b c');
  });
});
