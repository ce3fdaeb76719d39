/**
 * Opens the two Redis connections shared state needs (commands, pub/sub) for the
 * way the config reaches Redis: one URL, Redis Sentinel (the connection follows the
 * primary through failovers) or Redis Cluster (keys spread over its masters).
 * Every mode fails fast — no offline queue, one try per command — so an outage
 * sends requests to the local fallback instead of holding them.
 */
import type * as IoRedis from 'ioredis';
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { cappedBackoff } from '../backoff.ts';
import type { StateConfig } from '../config/schema/traffic.ts';
import { optionalModule } from '../optional-module.ts';

/** The Redis client package, loaded when a config first reaches a Redis (state store, acme storage). */
const ioredis = optionalModule<typeof IoRedis>('ioredis', 'a Redis state store or acme storage');

export type RedisClient = Redis | Cluster;

/** Where Redis is: the `state` section's url / sentinels / cluster fields. */
export type RedisTarget = Pick<StateConfig, 'url' | 'sentinels' | 'master' | 'cluster' | 'username' | 'password' | 'sentinel_password'>;

/** Reconnect forever, backing off to at most 2 s between attempts. */
const reconnect = (attempt: number) => cappedBackoff(100, 2_000, attempt);

const COMMON: RedisOptions = {
  maxRetriesPerRequest: 0,
  connectTimeout: 1_000,
  // A primary demoted to replica (it came back after a failover) refuses writes:
  // reconnect, which asks the sentinels where the primary is now.
  reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 2 : false),
};

function open(target: RedisTarget, options: RedisOptions): RedisClient {
  const { Cluster, Redis } = ioredis();
  const auth = { username: target.username, password: target.password };
  if (target.cluster) {
    const cluster: ClusterOptions = {
      enableOfflineQueue: false,
      clusterRetryStrategy: reconnect,
      redisOptions: { ...COMMON, ...auth, ...options },
    };
    return new Cluster(target.cluster, cluster);
  }
  const base: RedisOptions = { ...COMMON, enableOfflineQueue: false, retryStrategy: reconnect, ...options };
  if (target.sentinels) {
    return new Redis({
      ...base,
      ...auth,
      sentinels: target.sentinels,
      name: target.master,
      sentinelPassword: target.sentinel_password,
      sentinelRetryStrategy: reconnect,
      sentinelCommandTimeout: 1_000,
      // Subscribes to the sentinels' +switch-master, so a failover is followed at once
      // rather than at the next failed command.
      failoverDetector: true,
    });
  }
  return new Redis(target.url as string, base);
}

/** `timeoutMs`: how long a command may take before it counts as failed. */
export function openRedis(target: RedisTarget, timeoutMs: number): { client: RedisClient; subscriber: RedisClient } {
  return { client: openRedisClient(target, timeoutMs), subscriber: open(target, { autoResubscribe: false }) };
}

/** One connection for commands that may wait up to `timeoutMs` (storage off the request path). */
export function openRedisClient(target: RedisTarget, timeoutMs: number): RedisClient {
  return open(target, { commandTimeout: timeoutMs });
}

/** The servers that hold keys: every master of a cluster, else the one connection. */
export function keyHolders(client: RedisClient): Redis[] {
  return client instanceof ioredis().Cluster ? client.nodes('master') : [client];
}

/** A short description for logs (never the password). */
export function describeTarget(target: RedisTarget): string {
  if (target.cluster) return `cluster ${target.cluster.map((n) => `${n.host}:${n.port}`).join(',')}`;
  if (target.sentinels) return `sentinel ${target.master} via ${target.sentinels.map((n) => `${n.host}:${n.port}`).join(',')}`;
  const url = new URL(target.url as string);
  return `${url.protocol}//${url.host}`;
}
