/**
 * Rate limits shared by every instance: GCRA as one atomic Lua script per request,
 * on the Redis server's clock (instances whose clocks differ still agree). Every key
 * gets a TTL of the time its TAT lies ahead (+1 s), and the key is a digest of what
 * the client sent, so client-chosen keys can neither grow large nor stay.
 */
import { createHash } from 'node:crypto';
import type { Limit, Verdict } from './gcra.ts';
import type { RateLimitStore } from './rate-limit-store.ts';
import type { RedisConnection } from './redis-connection.ts';

/** KEYS[1] = the key; ARGV = interval (ms), burst. Returns allowed, remaining, retry-after ms, reset ms. */
const GCRA_LUA = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local interval = tonumber(ARGV[1])
local capacity = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local base = math.max(tat, now)
local ahead = base + interval - now
if ahead <= capacity + 1e-6 then
  redis.call('SET', KEYS[1], string.format('%.3f', base + interval), 'PX', math.ceil(ahead) + 1000)
  return {1, math.floor((capacity - ahead) / interval + 1e-6), 0, math.ceil(ahead)}
end
return {0, 0, math.ceil(ahead - capacity), math.ceil(base - now)}
`;

type GcraCommand = (key: string, intervalMs: number, burst: number) => Promise<[number, number, number, number]>;

export class RedisRateLimitStore implements RateLimitStore {
  private readonly redis: RedisConnection;
  private readonly gcra: GcraCommand;

  constructor(redis: RedisConnection) {
    this.redis = redis;
    redis.client.defineCommand('velocityGcra', { numberOfKeys: 1, lua: GCRA_LUA });
    const client = redis.client as unknown as { velocityGcra: GcraCommand };
    this.gcra = (key, intervalMs, burst) => client.velocityGcra(key, intervalMs, burst);
  }

  /** The Redis key for a limiter key: `rl:` + a fixed-size digest. */
  redisKey(key: string): string {
    return this.redis.key(`rl:${createHash('sha1').update(key).digest('base64url')}`);
  }

  /** `now` is ignored: the script reads the Redis server's clock. */
  async take(key: string, limit: Limit, _now: number): Promise<Verdict> {
    const [allowed, remaining, retryAfterMs, resetMs] = await this.gcra(this.redisKey(key), limit.intervalMs, limit.burst);
    return { allowed: allowed === 1, remaining, retryAfterMs, resetMs };
  }
}
