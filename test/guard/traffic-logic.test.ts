import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { CidrSet, ipToBig, parseCidr } from '../../src/guard/cidr.ts';
import { gcra } from '../../src/guard/gcra.ts';
import { LocalRateLimitTable } from '../../src/guard/rate-limit-store.ts';

describe('CIDR matching', () => {
  test('IPv4, IPv6 and IPv4-mapped IPv6 addresses match the right ranges', () => {
    const set = new CidrSet(['10.0.0.0/8', '2001:db8::/32', '192.168.1.7'].map((c) => parseCidr(c) as NonNullable<ReturnType<typeof parseCidr>>));
    assert.ok(set.has('10.200.3.4'));
    assert.ok(set.has('::ffff:10.1.2.3'), 'IPv4-mapped IPv6 is the IPv4 address');
    assert.ok(set.has('2001:db8:1::5'));
    assert.ok(set.has('192.168.1.7'));
    assert.equal(set.has('192.168.1.8'), false);
    assert.equal(set.has('11.0.0.1'), false);
    assert.equal(set.has('2001:db9::1'), false);
    assert.equal(set.has('not-an-ip'), false);
    assert.equal(ipToBig('::1'), 1n);
  });

  test('malformed ranges are rejected', () => {
    for (const bad of ['10.0.0.0/33', '1.2.3', '2001:db8::/129', '10.0.0.0/8/1', 'example.com', '10.0.0.0/x']) assert.equal(parseCidr(bad), undefined, bad);
  });
});

describe('GCRA', () => {
  const limit = { intervalMs: 100, burst: 5 };

  test('lets exactly `burst` requests through at once, then one per interval', () => {
    let tat = 0;
    const now = 1_000_000;
    const results: boolean[] = [];
    for (let i = 0; i < 7; i++) {
      const v = gcra(tat, now, limit);
      results.push(v.allowed);
      if (v.allowed) tat = v.tat;
    }
    assert.deepEqual(results, [true, true, true, true, true, false, false]);
    const denied = gcra(tat, now, limit);
    assert.equal(denied.retryAfterMs, 100);
    assert.equal(gcra(tat, now + 100, limit).allowed, true);
    assert.equal(gcra(tat, now + 99, limit).allowed, false);
  });

  test('a fixed window would let 2× through at its edge; GCRA does not', () => {
    let tat = 0;
    let allowed = 0;
    // 5 burst at t=999, then 5 more tried at t=1001 (a new "window").
    for (const now of [999, 999, 999, 999, 999, 1001, 1001, 1001, 1001, 1001]) {
      const v = gcra(tat, now, limit);
      if (v.allowed) {
        allowed++;
        tat = v.tat;
      }
    }
    assert.equal(allowed, 5);
  });
});

describe('local rate-limit table', () => {
  test('a flood of distinct keys stays in its fixed memory and recent keys still count correctly', () => {
    const table = new LocalRateLimitTable(LocalRateLimitTable.allocate(1024));
    const limit = { intervalMs: 1000, burst: 2 };
    for (let i = 0; i < 100_000; i++) table.take(`ip-${i}`, limit, 5_000);
    assert.equal(table.cells.length, 2048, 'the table did not grow');
    assert.ok(table.take('fresh', limit, 6_000).allowed);
    assert.ok(table.take('fresh', limit, 6_000).allowed);
    assert.equal(table.take('fresh', limit, 6_000).allowed, false);
  });
});

describe('traffic config errors', () => {
  const problem = (yaml: string) => {
    try {
      parseConfig(`${yaml}services:\n  - name: a\n`, 'v.yaml');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems[0];
    }
    assert.fail('accepted');
  };

  test('a malformed CIDR, a rate of 10/parsec and a bad Redis URL are errors with line and column', () => {
    const cidr = problem('ip_filter:\n  deny: ["10.0.0.0/33"]\n');
    assert.deepEqual([cidr?.path, cidr?.line, cidr?.column], ['ip_filter.deny[0]', 2, 10]);
    assert.match(cidr?.message ?? '', /not an IP address or CIDR range/);
    const rate = problem('rate_limits:\n  - rate: 10/parsec\n');
    assert.deepEqual([rate?.path, rate?.line], ['rate_limits[0].rate', 2]);
    assert.match(rate?.message ?? '', /not a rate/);
    const redis = problem('state:\n  store: redis\n  url: "http://localhost"\n');
    assert.deepEqual([redis?.path, redis?.line], ['state.url', 3]);
    assert.match(redis?.message ?? '', /redis:\/\//);
  });
});
