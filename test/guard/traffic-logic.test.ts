/** Traffic control's pure parts: CIDR matching, client-IP resolution, GCRA, the shared-memory table, the blocklist, rule keys, config errors. */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { CidrSet, ipToBig, parseCidr } from '../../src/cidr.ts';
import { parseConfig } from '../../src/config/load.ts';
import { rateLimitSchema } from '../../src/config/schema/traffic.ts';
import { ConfigError } from '../../src/errors.ts';
import { MAX_BLOCK_ENTRIES, MemoryBlocklist } from '../../src/guard/blocklist.ts';
import { ClientIpResolver, parseHop } from '../../src/guard/client-ip.ts';
import { gcra } from '../../src/guard/gcra.ts';
import { compileRule, normalizePath } from '../../src/guard/rate-limit.ts';
import { LocalRateLimitTable } from '../../src/guard/rate-limit-store.ts';
import { silentLogger } from '../../src/observe/logger.ts';

const cidrs = (...list: string[]) => new CidrSet(list.map((c) => parseCidr(c) as NonNullable<ReturnType<typeof parseCidr>>));
const ip = (text: string) => ipToBig(text) as bigint;

describe('CIDR matching', () => {
  test('IPv4, IPv6 and IPv4-mapped IPv6 addresses match the right ranges', () => {
    const set = cidrs('10.0.0.0/8', '2001:db8::/32', '192.168.1.7');
    assert.ok(set.has('10.200.3.4'));
    assert.ok(set.has('::ffff:10.1.2.3'), 'IPv4-mapped IPv6 is the IPv4 address');
    assert.ok(set.has('2001:db8:1::5'));
    assert.ok(set.has('192.168.1.7'));
    assert.equal(set.has('192.168.1.8'), false);
    assert.equal(set.has('11.0.0.1'), false);
    assert.equal(set.has('2001:db9::1'), false);
    assert.equal(set.has('not-an-ip'), false);
    assert.ok(cidrs('::ffff:10.0.0.0/104').has('10.9.9.9'), 'a mapped range matches plain IPv4 clients');
    assert.ok(cidrs('::/0').has('1.2.3.4') && cidrs('::/0').has('2001:db8::1'), '::/0 is everything');
    assert.equal(cidrs('0.0.0.0/0').has('2001:db8::1'), false, '0.0.0.0/0 is all of IPv4 only');
    assert.equal(ipToBig('::1'), 1n);
  });

  test('ranges get one canonical spelling', () => {
    assert.equal(parseCidr('10.1.2.3/8')?.text, '10.0.0.0/8');
    assert.equal(parseCidr('::ffff:10.0.0.0/104')?.text, '10.0.0.0/8');
    assert.equal(parseCidr('2001:DB8:0:0:0:0:0:1')?.text, '2001:db8::1');
    assert.equal(parseCidr('2001:db8:0:1:0:0:0:0/64')?.text, '2001:db8:0:1::/64');
    assert.equal(parseCidr('::ffff:198.51.100.7')?.text, '198.51.100.7');
  });

  test('malformed ranges are rejected', () => {
    for (const bad of ['10.0.0.0/33', '1.2.3', '2001:db8::/129', '10.0.0.0/8/1', 'example.com', '10.0.0.0/x', '', '10.0.0.0/-1']) assert.equal(parseCidr(bad), undefined, bad);
  });
});

describe('client IP', () => {
  const req = (peer: string, headers: Record<string, string> = {}) => ({ socket: { remoteAddress: peer }, headers }) as unknown as IncomingMessage;
  const resolver = new ClientIpResolver(cidrs('10.0.0.0/8', '127.0.0.1', '::1'));

  test('an untrusted peer is the client whatever its headers say', () => {
    assert.equal(resolver.resolve(req('203.0.113.9', { 'x-forwarded-for': '1.1.1.1' })), '203.0.113.9');
    assert.equal(resolver.resolve(req('::ffff:203.0.113.9', { forwarded: 'for=1.1.1.1' })), '203.0.113.9');
    assert.equal(new ClientIpResolver(cidrs()).resolve(req('127.0.0.1', { 'x-forwarded-for': '1.1.1.1' })), '127.0.0.1', 'no trusted proxies: headers ignored');
  });

  test('behind trusted proxies the right-most untrusted address is the client', () => {
    // The client put 6.6.6.6 there itself; the first trusted proxy appended the real peer, 198.51.100.1.
    assert.equal(resolver.resolve(req('10.0.0.2', { 'x-forwarded-for': '6.6.6.6, 198.51.100.1, 10.0.0.5' })), '198.51.100.1');
    assert.equal(resolver.resolve(req('10.0.0.2', { 'x-forwarded-for': '10.0.0.9, 10.0.0.5' })), '10.0.0.9', 'all hops trusted: the left-most');
    assert.equal(resolver.resolve(req('10.0.0.2')), '10.0.0.2', 'no header: the proxy itself');
    assert.equal(resolver.resolve(req('::1', { 'x-forwarded-for': '2001:DB8::0:7' })), '2001:db8::7', 'IPv6 hops are canonical');
    assert.equal(resolver.resolve(req('::1', { 'x-forwarded-for': '198.51.100.4:5123' })), '198.51.100.4', 'a port is dropped');
    assert.equal(resolver.resolve(req('::1', { forwarded: 'for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"' })), '2001:db8:cafe::17');
  });

  test('a hop that is not an address stops the walk at the proxy', () => {
    assert.equal(resolver.resolve(req('10.0.0.2', { 'x-forwarded-for': '198.51.100.1, unknown' })), '10.0.0.2');
    assert.equal(resolver.resolve(req('10.0.0.2', { forwarded: 'for=_hidden' })), '10.0.0.2');
    assert.equal(parseHop(' "[::1]:80" '), '::1');
    assert.equal(parseHop('1.2.3.4.5'), undefined);
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
    assert.equal(denied.resetMs, 500, 'the full burst is back after 5 intervals');
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

  test('over a long run the allowed count is burst + rate × time, never more', () => {
    let tat = 0;
    let allowed = 0;
    for (let now = 0; now < 10_000; now += 7) {
      const v = gcra(tat, now, limit);
      if (v.allowed) {
        allowed++;
        tat = v.tat;
      }
    }
    assert.ok(allowed <= 5 + 10_000 / 100 && allowed >= 100, String(allowed));
  });
});

describe('local rate-limit table', () => {
  test('a flood of distinct keys stays in its fixed memory and recent keys still count correctly', () => {
    const table = new LocalRateLimitTable(LocalRateLimitTable.allocate(1024));
    const limit = { intervalMs: 1000, burst: 2 };
    for (let i = 0; i < 100_000; i++) table.take(`ip-${i}`, limit, 5_000);
    assert.equal(table.slots, 1024, 'the table did not grow');
    assert.ok(table.take('fresh', limit, 6_000).allowed);
    assert.ok(table.take('fresh', limit, 6_000).allowed);
    assert.equal(table.take('fresh', limit, 6_000).allowed, false);
  });

  test('idle keys expire: a key whose TAT has passed starts with a full burst', () => {
    const table = new LocalRateLimitTable(LocalRateLimitTable.allocate(64));
    const limit = { intervalMs: 100, burst: 3 };
    for (let i = 0; i < 3; i++) assert.ok(table.take('k', limit, 1_000).allowed);
    assert.equal(table.take('k', limit, 1_000).allowed, false);
    for (let i = 0; i < 3; i++) assert.ok(table.take('k', limit, 1_300).allowed, 'full again after burst × interval');
  });

  test('two tables on one buffer share the seed and the counts', () => {
    const buffer = LocalRateLimitTable.allocate(256);
    const a = new LocalRateLimitTable(buffer);
    const b = new LocalRateLimitTable(buffer);
    assert.equal(a.hash64('x'), b.hash64('x'));
    assert.notEqual(a.hash64('x'), new LocalRateLimitTable(LocalRateLimitTable.allocate(256)).hash64('x'), 'another table has another seed');
    const limit = { intervalMs: 1000, burst: 2 };
    assert.ok(a.take('k', limit, 0).allowed);
    assert.ok(b.take('k', limit, 0).allowed);
    assert.equal(a.take('k', limit, 0).allowed, false);
  });

  test('four threads hammering one key through shared memory allow exactly the burst together', async () => {
    const buffer = LocalRateLimitTable.allocate(1024);
    const now = Date.now();
    const counts = await Promise.all(
      Array.from(
        { length: 4 },
        () =>
          new Promise<number>((resolve, reject) => {
            const worker = new Worker(new URL('./limiter-worker.ts', import.meta.url), { workerData: { buffer, attempts: 2_000, now } });
            worker.once('message', resolve);
            worker.once('error', reject);
          }),
      ),
    );
    assert.equal(
      counts.reduce((a, b) => a + b, 0),
      1_000,
      `per thread: ${counts.join(', ')}`,
    );
  });
});

describe('dynamic blocklist (in memory)', () => {
  test('blocks single addresses and ranges, removes by any spelling, and expires entries', async (t) => {
    const list = new MemoryBlocklist(silentLogger());
    t.after(() => list.close());
    await list.add('198.51.100.7', undefined, 'by hand');
    // A minute: a loaded machine took more than a 50 ms lifetime between the add and the first match.
    await list.add('2001:db8::/32', 60_000, 'for a minute');
    // Read after the adds, so now + 60 s is past the entry's expiry.
    const now = Date.now();
    assert.equal(list.match(ip('198.51.100.7'))?.reason, 'by hand');
    assert.equal(list.match(ip('::ffff:198.51.100.7'))?.cidr, '198.51.100.7');
    assert.equal(list.match(ip('198.51.100.8')), undefined);
    assert.equal(list.match(ip('2001:db8:5::1'))?.source, 'operator');
    assert.equal(list.match(ip('2001:db8:5::1'), now + 60_001), undefined, 'expired');
    assert.equal(await list.remove('::ffff:198.51.100.7'), true);
    assert.equal(await list.remove('198.51.100.7'), false);
    assert.deepEqual(
      list.list(now + 60_001).map((e) => e.cidr),
      [],
    );
    await assert.rejects(list.add('10.0.0.0/33', 1000), /not an IP address or CIDR range/);
    await assert.rejects(list.add('10.0.0.1', -5), /ttl/);
  });

  test('refuses entries past its bound instead of growing without end', async (t) => {
    const list = new MemoryBlocklist(silentLogger());
    t.after(() => list.close());
    for (let i = 0; i < MAX_BLOCK_ENTRIES; i++)
      list.put({ cidr: `x${i}`, reason: '', source: 'auto-ban', expiresAt: null, addedAt: 0, range: { text: `x${i}`, base: BigInt(i), bits: 128 } });
    assert.equal(list.size, MAX_BLOCK_ENTRIES);
    await assert.rejects(list.add('2001:db8::1', 1000, 'one more', 'auto-ban'), /full/);
  });
});

describe('rate-limit rules', () => {
  const rule = (yaml: Record<string, unknown>) => compileRule(rateLimitSchema.parse(yaml), 0, 'svc');
  const request = (method: string, headers: Record<string, string> = {}) => ({
    clientIp: '198.51.100.1',
    method,
    url: '/',
    header: (n: string) => headers[n],
    cookie: () => undefined,
  });

  test('paths match by prefix or glob, and the endpoint key is the pattern that matched', () => {
    const r = rule({ paths: ['/api/*/orders', '/search'], methods: ['POST'], key: ['endpoint'], rate: '10/s' });
    assert.equal(r.keyFor(request('POST'), '/api/v1/orders'), 'svc/svc-0|POST /api/*/orders');
    assert.equal(r.keyFor(request('POST'), '/api/v1/orders/7'), undefined, 'a glob matches the whole path');
    assert.equal(r.keyFor(request('POST'), '/search/more'), 'svc/svc-0|POST /search');
    assert.equal(r.keyFor(request('GET'), '/search'), undefined, 'method not counted');
    assert.equal(r.limit.burst, 10, 'default burst: one second’s worth');
    assert.equal(r.policy, '"svc-0";q=10;w=1');
  });

  test('a header key skips requests without the header (as nginx and Envoy do)', () => {
    const r = rule({ name: 'keyed', key: ['client_ip', 'header:x-api-key'], rate: '100/m', burst: 5 });
    assert.equal(r.keyFor(request('GET', { 'x-api-key': 'k1' }), '/'), 'svc/keyed|198.51.100.1|k1');
    assert.equal(r.keyFor(request('GET'), '/'), undefined);
    assert.equal(r.policy, '"keyed";q=100;w=60');
  });

  test('paths are normalized before matching, so encodings and dot segments do not dodge a rule', () => {
    assert.equal(normalizePath('/api/./%6Cogin?x=1'), '/api/login');
    assert.equal(normalizePath('//api//v1/../login'), '/api/login');
    assert.equal(normalizePath('/a%2Fb'), '/a%2Fb', 'an encoded slash stays encoded');
    assert.equal(normalizePath('/plain/path/'), '/plain/path/');
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
    const trusted = problem('trusted_proxies: ["10.0.0.0/8", "proxy.example"]\n');
    assert.deepEqual([trusted?.path, trusted?.line, trusted?.column], ['trusted_proxies[1]', 1, 33]);
    const rate = problem('rate_limits:\n  - rate: 10/parsec\n');
    assert.deepEqual([rate?.path, rate?.line, rate?.column], ['rate_limits[0].rate', 2, 11]);
    assert.match(rate?.message ?? '', /not a rate/);
    const redis = problem('state:\n  store: redis\n  url: "http://localhost"\n');
    assert.deepEqual([redis?.path, redis?.line], ['state.url', 3]);
    assert.match(redis?.message ?? '', /redis:\/\//);
    const missing = problem('state:\n  store: redis\n');
    assert.equal(missing?.path, 'state.url');
    const key = problem('rate_limits:\n  - { rate: 1/s, key: [cookie] }\n');
    assert.match(key?.message ?? '', /client_ip, endpoint or header:NAME/);
  });

  test('Sentinel and Cluster: node addresses, the master name and one way to Redis are checked with their position', () => {
    const node = problem('state:\n  store: redis\n  sentinels: ["127.0.0.1:26379", "sentinel-b"]\n  master: m\n');
    assert.deepEqual([node?.path, node?.line, node?.column], ['state.sentinels[1]', 3, 34]);
    assert.match(node?.message ?? '', /not a node address; expected HOST:PORT/);
    const master = problem('state:\n  store: redis\n  sentinels: ["127.0.0.1:26379"]\n');
    assert.equal(master?.path, 'state.master');
    assert.match(master?.message ?? '', /name they monitor the primary under/);
    const both = problem('state:\n  store: redis\n  url: redis://127.0.0.1:6379\n  cluster: ["127.0.0.1:7000"]\n');
    assert.deepEqual([both?.path, both?.line, both?.message], ['state.cluster', 4, 'give only one of url, cluster']);
    const secret = problem('state:\n  store: redis\n  url: redis://127.0.0.1:6379\n  password: pw\n');
    assert.equal(secret?.path, 'state.password');
    const { config } = parseConfig('state:\n  store: redis\n  cluster: ["10.0.0.1:7000", "[2001:db8::1]:7001"]\nservices:\n  - name: a\n', 'v.yaml');
    assert.deepEqual(config.state.cluster, [
      { host: '10.0.0.1', port: 7000 },
      { host: '2001:db8::1', port: 7001 },
    ]);
  });
});
