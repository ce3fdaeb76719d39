/**
 * `node bench/limiter.ts [--quick]`: what the rate limiter costs per request, on
 * its own (no HTTP): the local shared-memory table, the whole guard (rule match,
 * key, headers) on it, and the Redis store (one Lua call per request) against a
 * real redis-server on a free port — sequential (latency) and 50 in flight
 * (throughput). Bounded: a fixed number of operations per case.
 */
import type { TestContext } from 'node:test';
import { parseConfig } from '../src/config/load.ts';
import { AutoBan } from '../src/guard/auto-ban.ts';
import { MemoryBlocklist } from '../src/guard/blocklist.ts';
import { RateLimitGuard } from '../src/guard/rate-limit-guard.ts';
import { LocalRateLimitTable } from '../src/guard/rate-limit-store.ts';
import { RedisConnection } from '../src/guard/redis-connection.ts';
import { RedisRateLimitStore } from '../src/guard/redis-rate-limit-store.ts';
import { silentLogger } from '../src/observe/logger.ts';
import type { RequestContext } from '../src/proxy/context.ts';
import { startRedis } from '../test/support/redis.ts';

const quick = process.argv.includes('--quick');
const LOCAL_OPS = quick ? 100_000 : 2_000_000;
const REDIS_OPS = quick ? 2_000 : 20_000;
const CLIENTS = 10_000;
const limit = { intervalMs: 1, burst: 1_000 };
const ips = Array.from({ length: CLIENTS }, (_, i) => `198.51.${(i >> 8) & 255}.${i & 255}`);
const rows: [string, number, number][] = [];

function report(name: string, ops: number, ms: number): void {
  rows.push([name, (ms * 1e6) / ops, (ops / ms) * 1000]);
  console.log(`${name}: ${((ms * 1e6) / ops).toFixed(0)} ns/op`);
}

async function time(name: string, ops: number, run: () => void | Promise<void>): Promise<void> {
  await run(); // one untimed pass first: JIT warm, keys in place
  const started = performance.now();
  await run();
  report(name, ops, performance.now() - started);
}

const table = new LocalRateLimitTable(LocalRateLimitTable.allocate(65_536));
await time('local table take (10k clients)', LOCAL_OPS, () => {
  const now = Date.now();
  for (let i = 0; i < LOCAL_OPS; i++) table.take(ips[i % CLIENTS] as string, limit, now);
});

// The whole guard on the local table: one global per-IP rule, one service rule with headers.
const { config } = parseConfig(
  `rate_limits:
  - { name: per-ip, rate: 1000/s, burst: 1000 }
services:
  - name: app
    servers: [http://127.0.0.1:1]
    rate_limits:
      - { name: api, paths: ["/api/"], key: [client_ip, endpoint], rate: 1000/s, headers: true }
`,
  'bench.yaml',
);
const log = silentLogger();
const bans = new AutoBan(table, new MemoryBlocklist(log), log);
const guard = new RateLimitGuard(config, table, bans);
const service = { config: config.services[0], name: 'app' } as unknown as Parameters<RateLimitGuard['check']>[1];
const contexts = ips.map(
  (clientIp) =>
    ({
      clientIp,
      method: 'GET',
      url: '/api/orders?page=2',
      header: () => undefined,
      addResponseHeader() {},
      record: {},
    }) as unknown as RequestContext,
);
await time('guard check, 2 rules (local)', LOCAL_OPS / 2, () => {
  for (let i = 0; i < LOCAL_OPS / 2; i++) guard.check(contexts[i % CLIENTS] as RequestContext, service);
});

const cleanups: (() => unknown)[] = [];
const context = { after: (fn: () => unknown) => cleanups.push(fn), skip: (why: string) => console.log(why) } as unknown as TestContext;
const redisServer = await startRedis(context);
if (redisServer) {
  const redis = new RedisConnection({ url: redisServer.url }, 'bench:', 1_000, log);
  await redis.waitReady(5_000);
  const store = new RedisRateLimitStore(redis);
  await time('redis take, sequential (latency)', REDIS_OPS, async () => {
    for (let i = 0; i < REDIS_OPS; i++) await store.take(ips[i % CLIENTS] as string, limit, 0);
  });
  await time('redis take, 50 in flight (throughput)', REDIS_OPS, async () => {
    let next = 0;
    const worker = async () => {
      while (next < REDIS_OPS) await store.take(ips[next++ % CLIENTS] as string, limit, 0);
    };
    await Promise.all(Array.from({ length: 50 }, worker));
  });
  redis.close();
} else console.log('redis-server is not available: the Redis cases were skipped');
for (const c of cleanups) await c();

console.log(`\n| case | ns/op | µs/op | ops/s |\n|---|---:|---:|---:|`);
for (const [name, ns, perSecond] of rows) console.log(`| ${name} | ${ns.toFixed(0)} | ${(ns / 1000).toFixed(2)} | ${Math.round(perSecond)} |`);
process.exit(0);
