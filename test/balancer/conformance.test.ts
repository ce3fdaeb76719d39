/**
 * One suite every policy must pass — the built-ins and the example custom policy:
 * it only picks usable servers from the list it was given, answers undefined when
 * none is usable, never changes the servers, and is deterministic given its random source.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import canaryPolicy from '../../examples/custom-policy.ts';
import { localPolicyState } from '../../src/balancer/local-state.ts';
import type { BalancedServer, PickRequest, PolicyFactory } from '../../src/balancer/policy.ts';
import { policyFactory, policyNames, policyOptionsSchema } from '../../src/balancer/registry.ts';

const OPTIONS: Record<string, Record<string, unknown>> = {
  'header-hash': { header: 'x-user' },
  'cookie-hash': { cookie: 'session' },
};

const factories: [string, PolicyFactory, Record<string, unknown>][] = [
  ...policyNames().map((name): [string, PolicyFactory, Record<string, unknown>] => [
    name,
    policyFactory(name) as PolicyFactory,
    (policyOptionsSchema(name)?.parse(OPTIONS[name] ?? {}) as Record<string, unknown>) ?? {},
  ]),
  ['example custom (canary)', canaryPolicy, { canary: 's1', percent: 30 }],
];

function seeded(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const serverArb = fc.array(
  fc.record({ weight: fc.integer({ min: 1, max: 10 }), inFlight: fc.integer({ min: 0, max: 20 }), latency: fc.integer({ min: 0, max: 500 }), usable: fc.boolean() }),
  { minLength: 0, maxLength: 8 },
);
const requestArb = fc.record({
  ip: fc.ipV4(),
  path: fc.webPath(),
  user: fc.option(fc.string({ minLength: 1, maxLength: 8 })),
  session: fc.option(fc.string({ minLength: 1, maxLength: 8 })),
});

const toServers = (specs: { weight: number; inFlight: number; latency: number }[]): BalancedServer[] =>
  specs.map((s, i) => Object.freeze({ id: `s${i}`, slot: i, weight: s.weight, inFlight: s.inFlight, latency: s.latency }));

const toRequest = (r: { ip: string; path: string; user: string | null; session: string | null }): PickRequest => ({
  clientIp: r.ip,
  method: 'GET',
  url: r.path || '/',
  header: (name) => (name === 'x-user' ? (r.user ?? undefined) : undefined),
  cookie: (name) => (name === 'session' ? (r.session ?? undefined) : undefined),
});

for (const [name, factory, options] of factories) {
  describe(`policy conformance: ${name}`, () => {
    test('picks only a usable server from the given list, one whenever any is usable, and changes no server', () => {
      fc.assert(
        fc.property(serverArb, requestArb, fc.integer(), (specs, req, seed) => {
          const servers = toServers(specs);
          const policy = factory(options, { shared: localPolicyState(), random: seeded(seed), now: () => 0 });
          const usable = (s: BalancedServer) => (specs[s.slot] as { usable: boolean }).usable;
          const snapshot = structuredClone(servers);
          for (let i = 0; i < 5; i++) {
            const picked = policy.pick(servers, toRequest(req), usable);
            if (servers.some(usable)) {
              assert.ok(picked, 'some server is usable, so one is picked');
              assert.ok(servers.includes(picked));
              assert.ok(usable(picked));
            } else assert.equal(picked, undefined);
          }
          // Servers are frozen (a write would throw) and unchanged: health, counts and weights are not the policy's.
          assert.deepEqual(servers, snapshot);
        }),
        { numRuns: 150 },
      );
    });

    test('is deterministic given the same random source and state', () => {
      fc.assert(
        fc.property(serverArb, fc.array(requestArb, { minLength: 1, maxLength: 10 }), fc.integer(), (specs, reqs, seed) => {
          const servers = toServers(specs);
          const run = () => {
            const policy = factory(options, { shared: localPolicyState(), random: seeded(seed), now: () => 0 });
            return reqs.map((r) => policy.pick(servers, toRequest(r), (s) => (specs[s.slot] as { usable: boolean }).usable)?.id);
          };
          assert.deepEqual(run(), run());
        }),
        { numRuns: 100 },
      );
    });
  });
}
