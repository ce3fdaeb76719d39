/**
 * Traffic control for one Velocity: builds the guards from each config and keeps
 * what outlives a reload — the rate-limit store (local table, or Redis with the
 * table as fallback), the blocklist, and the Redis connections.
 */

import { CidrSet } from '../cidr.ts';
import type { Config } from '../config/schema/root.ts';
import type { StateConfig } from '../config/schema/traffic.ts';
import type { Logger } from '../observe/logger.ts';
import type { RequestRules } from '../proxy/context.ts';
import { AutoBan } from './auto-ban.ts';
import { type Blocklist, MemoryBlocklist } from './blocklist.ts';
import { ClientIpResolver } from './client-ip.ts';
import { FailoverRateLimitStore } from './failover-rate-limit-store.ts';
import { IpFilterGuard } from './ip-filter-guard.ts';
import { RateLimitGuard } from './rate-limit-guard.ts';
import { LocalRateLimitTable, type RateLimitStore } from './rate-limit-store.ts';
import { RedisBlocklist } from './redis-blocklist.ts';
import { RedisConnection } from './redis-connection.ts';
import { RedisRateLimitStore } from './redis-rate-limit-store.ts';

/** How long start() waits for Redis before serving with the local fallback. */
const REDIS_START_WAIT_MS = 2_000;

export class TrafficControl {
  readonly blocklist: Blocklist;
  private readonly store: RateLimitStore;
  private readonly bans: AutoBan;
  private readonly redis: RedisConnection | undefined;
  private readonly shared: RedisBlocklist | undefined;
  private readonly state: StateConfig;
  private readonly log: Logger;

  /**
   * `tableBuffer` is the local limiter table in shared memory (see SharedState).
   * `wrapBlocklist` lets a thread pool put its own layer around this thread's list
   * (to pass changes to the other threads); the guards and auto-ban then use that layer.
   */
  constructor(
    config: Config,
    tableBuffer: SharedArrayBuffer,
    log: Logger,
    options: { wrapBlocklist?: (list: Blocklist) => Blocklist; onRedisDown?: () => void; onLocalAllow?: () => void } = {},
  ) {
    this.log = log;
    this.state = config.state;
    const table = new LocalRateLimitTable(tableBuffer);
    const { store, prefix, on_failure, timeout } = config.state;
    let blocklist: Blocklist;
    if (store === 'redis') {
      const redis = new RedisConnection(config.state, prefix, timeout, log, options.onRedisDown);
      this.redis = redis;
      this.shared = new RedisBlocklist(redis, log);
      blocklist = this.shared;
      this.store = new FailoverRateLimitStore(new RedisRateLimitStore(redis), table, redis, on_failure, options.onLocalAllow);
    } else {
      blocklist = new MemoryBlocklist(log);
      this.store = table;
    }
    this.blocklist = options.wrapBlocklist ? options.wrapBlocklist(blocklist) : blocklist;
    this.bans = new AutoBan(this.store, this.blocklist, log);
  }

  /** With Redis: waits (bounded) for it and for the shared blocklist, so the first requests already count together. */
  async ready(): Promise<void> {
    if (!this.redis) return;
    if (await this.redis.waitReady(REDIS_START_WAIT_MS)) await this.shared?.ready();
    else this.log.warn({ waitedMs: REDIS_START_WAIT_MS, onFailure: this.state.on_failure }, 'redis not reachable at start: serving with the local fallback until it is');
  }

  /** Client-IP resolution and the guards of `config` (at start and on every reload, on every serving thread). */
  rules(config: Config): RequestRules {
    return {
      clientIps: new ClientIpResolver(new CidrSet(config.trusted_proxies)),
      guards: [new IpFilterGuard(config, this.blocklist), new RateLimitGuard(config, this.store, this.bans)],
    };
  }

  async close(): Promise<void> {
    this.blocklist.close();
    this.redis?.close();
  }
}
