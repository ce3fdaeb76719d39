/**
 * Property-based fuzzing (fast-check) of the small parsers that see operator and
 * client input, and of the hash policies that see request keys:
 * - CIDR: parsing random text never throws; an address is in a parsed range
 *   exactly when a reference computation on plain bigints says so (IPv4 and IPv6).
 * - Rates: random text never throws; what parses is a positive, finite rate.
 * - Hash policies (ip, url, header, cookie): for random server sets, availability
 *   and keys, pick never throws, answers only an available server of the set (or
 *   nothing when none is), and answers the same for the same key and set.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { localPolicyState } from '../../src/balancer/local-state.ts';
import type { BalancedServer, PickRequest } from '../../src/balancer/policy.ts';
import { policyFactory, policyOptionsSchema } from '../../src/balancer/registry.ts';
import { CidrSet, cidrContains, ipToBig, parseCidr } from '../../src/cidr.ts';
import { rate } from '../../src/config-fields.ts';
import { parseRate } from '../../src/units.ts';

const RUNS = { numRuns: 2_000 };

/** Text that looks like addresses and ranges often, and like anything else the rest of the time. */
const cidrish = fc.oneof(
  fc.string(),
  fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF.:/%[] -x'.split('')), maxLength: 50 }),
  fc
    .tuple(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended()), fc.option(fc.oneof(fc.integer({ min: -5, max: 140 }).map(String), fc.string({ maxLength: 4 }))))
    .map(([ip, len]) => (len === null ? ip : `${ip}/${len}`)),
);

describe('CIDR parser and matcher', () => {
  test('random text never makes the parser or the matcher throw; what parses re-parses to itself', () => {
    fc.assert(
      fc.property(cidrish, cidrish, (text, address) => {
        const parsed = parseCidr(text);
        ipToBig(address);
        new CidrSet(parsed ? [parsed] : []).has(address);
        if (!parsed) return;
        assert.ok(parsed.bits >= 0 && parsed.bits <= 128);
        assert.ok(parsed.base >= 0n && parsed.base < 1n << 128n);
        const again = parseCidr(parsed.text);
        assert.deepEqual(again, parsed, `${text} → ${parsed.text}`);
      }),
      RUNS,
    );
  });

  const v4 = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 });
  const v6 = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 });
  /** The reference: the address and the network agree on the first `prefix` of `width` bits. */
  const reference = (parts: number[], partBits: number, prefix: number, address: number[]) => {
    const big = (p: number[]) => p.reduce((acc, x) => (acc << BigInt(partBits)) | BigInt(x), 0n);
    const width = BigInt(parts.length * partBits);
    const drop = width - BigInt(prefix);
    return big(parts) >> drop === big(address) >> drop;
  };
  /** An address near the network half of the time (host bits random), so both answers are common. */
  const nearOrAnywhere = (parts: number[], partBits: number, prefix: number, random: number[], flip: number) => {
    if (flip % 2 === 0) return random;
    const mask = (1 << partBits) - 1;
    return parts.map((p, i) => {
      const fixed = Math.max(0, Math.min(partBits, prefix - i * partBits));
      const keep = fixed === 0 ? 0 : (mask << (partBits - fixed)) & mask;
      return (p & keep) | ((random[i] as number) & ~keep & mask);
    });
  };

  test('an IPv4 address is in a parsed IPv4 range iff the reference bigint computation says so (dotted and IPv4-mapped)', () => {
    fc.assert(
      fc.property(v4, fc.integer({ min: 0, max: 32 }), v4, fc.nat(), (net, prefix, random, flip) => {
        const address = nearOrAnywhere(net, 8, prefix, random, flip);
        const range = parseCidr(`${net.join('.')}/${prefix}`);
        assert.ok(range);
        const expected = reference(net, 8, prefix, address);
        const ip = address.join('.');
        assert.equal(cidrContains(range, ipToBig(ip) as bigint), expected, `${ip} in ${net.join('.')}/${prefix}`);
        assert.equal(new CidrSet([range]).has(ip), expected);
        assert.equal(new CidrSet([range]).has(`::ffff:${ip}`), expected, 'the mapped form matches the same way');
        // The same range written in the IPv6 space.
        const mapped = parseCidr(`::ffff:${net.join('.')}/${96 + prefix}`);
        assert.deepEqual(mapped && { base: mapped.base, bits: mapped.bits }, { base: range.base, bits: range.bits });
      }),
      RUNS,
    );
  });

  test('an IPv6 address is in a parsed IPv6 range iff the reference bigint computation says so (full and compressed text)', () => {
    fc.assert(
      fc.property(v6, fc.integer({ min: 0, max: 128 }), v6, fc.nat(), fc.boolean(), (net, prefix, random, flip, compress) => {
        const address = nearOrAnywhere(net, 16, prefix, random, flip);
        const hex = (parts: number[]) => parts.map((p) => p.toString(16)).join(':');
        // Node's URL parser writes the canonical compressed form.
        const text = (parts: number[]) => (compress ? new URL(`http://[${hex(parts)}]/`).hostname.slice(1, -1) : hex(parts));
        const range = parseCidr(`${text(net)}/${prefix}`);
        assert.ok(range, `${text(net)}/${prefix} parses`);
        const expected = reference(net, 16, prefix, address);
        assert.equal(new CidrSet([range]).has(text(address)), expected, `${text(address)} in ${text(net)}/${prefix}`);
        assert.equal(new CidrSet([range]).has(`[${text(address)}]`), expected, 'the bracketed form matches the same way');
      }),
      RUNS,
    );
  });
});

describe('rate parser', () => {
  const rateish = fc.oneof(
    fc.string(),
    fc.string({ unit: fc.constantFrom(...'0123456789./ smhdayinuteorSMHD-+eE'.split('')), maxLength: 30 }),
    fc
      .tuple(
        fc.oneof(fc.nat().map(String), fc.double().map(String), fc.string({ maxLength: 3 })),
        fc.constantFrom('', '10', '0', ' '),
        fc.constantFrom('s', 'm', 'h', 'd', 'min', 'minute', 'x', ''),
      )
      .map(([count, mult, unit]) => `${count}/${mult}${unit}`),
    // Numbers longer than a double holds: 1e309 is Infinity.
    fc
      .tuple(
        fc.string({ unit: fc.constantFrom(...'0123456789'.split('')), minLength: 1, maxLength: 400, size: 'max' }),
        fc.string({ unit: fc.constantFrom(...'0123456789'.split('')), maxLength: 400, size: 'max' }),
      )
      .map(([count, mult]) => `${count}/${mult}s`),
  );

  test('random text never throws; what parses is a positive finite count per positive finite period', () => {
    fc.assert(
      fc.property(rateish, (text) => {
        const r = parseRate(text);
        if (r) {
          assert.ok(Number.isFinite(r.count) && r.count > 0, `count of ${JSON.stringify(text)}`);
          assert.ok(Number.isFinite(r.periodMs) && r.periodMs > 0, `period of ${JSON.stringify(text)}`);
        }
        // The config schema answers an issue, never an exception.
        const result = rate().safeParse(text);
        assert.equal(result.success, r !== undefined);
      }),
      RUNS,
    );
  });
});

describe('hash policies', () => {
  const HASH_POLICIES: [string, Record<string, unknown>, (key: string) => PickRequest][] = [
    ['ip-hash', {}, (key) => request({ clientIp: key })],
    ['url-hash', {}, (key) => request({ url: `/${key}` })],
    ['url-hash', { query: true }, (key) => request({ url: `/p?${key}` })],
    ['header-hash', { header: 'x-user' }, (key) => request({ header: key })],
    ['cookie-hash', { cookie: 'session' }, (key) => request({ cookie: key })],
  ];
  function request(r: { clientIp?: string; url?: string; header?: string; cookie?: string }): PickRequest {
    return {
      clientIp: r.clientIp ?? '192.0.2.1',
      method: 'GET',
      url: r.url ?? '/',
      header: (name) => (name === 'x-user' ? r.header : undefined),
      cookie: (name) => (name === 'session' ? r.cookie : undefined),
    };
  }
  const setArb = fc.uniqueArray(
    fc.record({
      id: fc.oneof(
        fc.string({ minLength: 1, maxLength: 12 }),
        fc.ipV4().map((ip) => `${ip}:80`),
      ),
      weight: fc.integer({ min: 1, max: 5 }),
      available: fc.boolean(),
    }),
    { minLength: 0, maxLength: 8, selector: (s) => s.id },
  );
  const keyArb = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.ipV4(), fc.ipV6(), fc.constant(''));

  for (const [name, rawOptions, toRequest] of HASH_POLICIES) {
    test(`${name} ${JSON.stringify(rawOptions)}: pick never throws, answers only an available server of the set or nothing, and the same for the same key and set`, () => {
      const factory = policyFactory(name);
      assert.ok(factory);
      const options = policyOptionsSchema(name)?.parse(rawOptions) as Record<string, unknown>;
      fc.assert(
        fc.property(setArb, keyArb, fc.integer(), (specs, key, seed) => {
          const servers: BalancedServer[] = specs.map((s, i) => Object.freeze({ id: s.id, slot: i, weight: s.weight, configuredWeight: s.weight, inFlight: 0, latency: 0 }));
          const available = (s: BalancedServer) => (specs[s.slot] as { available: boolean }).available;
          const make = () => factory(options, { shared: localPolicyState(), random: () => ((seed >>> 0) % 1000) / 1000, now: () => 0 });
          const req = toRequest(key);
          const first = make().pick(servers, req, available);
          if (servers.some(available)) {
            assert.ok(first, 'a server is available, so one is picked');
            assert.ok(servers.includes(first) && available(first), 'the pick is an available server of the set');
          } else assert.equal(first, undefined);
          // A key that is present (non-empty) hashes: the same answer from the same and from a fresh policy.
          if (key !== '' || name === 'url-hash') {
            const again = make();
            assert.equal(again.pick(servers, req, available)?.id, first?.id, 'a fresh policy picks the same');
            assert.equal(again.pick(servers, toRequest(key), available)?.id, first?.id, 'a second pick picks the same');
            // The same set in another array instance (e.g. after a topology rebuild) hashes the same.
            assert.equal(again.pick([...servers], req, available)?.id, first?.id, 'the same set in a new array picks the same');
          }
        }),
        { numRuns: 300 },
      );
    });
  }
});
