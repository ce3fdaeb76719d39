/**
 * Shared state through Redis: the limiter as one atomic Lua script (GCRA, with a
 * TTL on every key so client-chosen keys cannot fill Redis), and the blocklist
 * as a hash plus pub/sub so a change on one instance reaches the others at once.
 * Commands fail fast (no offline queue, short timeouts) so a Redis outage never
 * holds requests; callers fall back to local state.
 */
import { Redis } from 'ioredis';
import type { Logger } from '../observe/logger.ts';
import type { Limit, Verdict } from './gcra.ts';

const GCRA_SCRIPT = `
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local capacity = interval * tonumber(ARGV[3])
local base = math.max(tat, now)
local nextTat = base + interval
local ahead = nextTat - now
if ahead <= capacity then
  redis.call('SET', KEYS[1], tostring(nextTat), 'PX', math.ceil(ahead) + 1000)
  return {1, math.floor((capacity - ahead) / interval), 0, tostring(ahead)}
end
return {0, 0, tostring(ahead - capacity), tostring(base - now)}
`;

export class RedisState {
  readonly client: Redis;
  readonly subscriber: Redis;
  private readonly prefix: string;
  private readonly log: Logger;
  private down = false;
  private connected = false;
  private readonly listeners = new Set<(message: string) => void>();

  constructor(url: string, prefix: string, log: Logger) {
    const options = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: 200,
      connectTimeout: 1000,
      lazyConnect: false,
      retryStrategy: (n: number) => Math.min(2000, 100 * 2 ** Math.min(n, 5)),
    };
    this.client = new Redis(url, options);
    this.subscriber = new Redis(url, { ...options, commandTimeout: undefined });
    this.prefix = prefix;
    this.log = log;
    this.client.defineCommand('velocityGcra', { numberOfKeys: 1, lua: GCRA_SCRIPT });
    for (const c of [this.client, this.subscriber]) {
      c.on('error', (err: Error) => this.markDown(err));
      c.on('ready', () => this.markUp());
    }
    this.subscriber.on('message', (_channel: string, message: string) => {
      for (const l of this.listeners) l(message);
    });
    // Without an offline queue, subscribing must wait for each (re)connection.
    this.subscriber.on('ready', () => void this.subscriber.subscribe(`${prefix}blocklist`).catch(() => undefined));
  }

  private markDown(err: Error): void {
    if (this.down) return;
    this.down = true;
    this.log.error({ err: err.message }, 'redis unreachable: rate limits and the blocklist fall back to this instance; reconnecting');
  }

  private markUp(): void {
    if (!this.connected) {
      this.connected = true;
      this.log.info('redis connected: rate limits and the blocklist are shared');
    }
    if (!this.down) return;
    this.down = false;
    this.log.info('redis reachable again: shared rate limits and blocklist resumed');
  }

  get available(): boolean {
    return this.client.status === 'ready';
  }

  async take(key: string, limit: Limit, now: number): Promise<Verdict> {
    const r = (await (this.client as unknown as { velocityGcra(k: string, ...a: (string | number)[]): Promise<[number, number, string, string]> }).velocityGcra(
      `${this.prefix}rl:${key}`,
      now,
      limit.intervalMs,
      limit.burst,
    )) as [number, number, string, string];
    const allowed = r[0] === 1;
    return allowed
      ? { allowed, remaining: r[1], retryAfterMs: 0, resetMs: Number(r[3]), tat: 0 }
      : { allowed, remaining: 0, retryAfterMs: Number(r[2]), resetMs: Number(r[3]), tat: 0 };
  }

  onBlocklistMessage(listener: (message: string) => void): void {
    this.listeners.add(listener);
  }

  async publishBlocklist(message: string): Promise<void> {
    await this.client.publish(`${this.prefix}blocklist`, message);
  }

  hashKey(name: string): string {
    return `${this.prefix}${name}`;
  }

  async close(): Promise<void> {
    this.client.disconnect();
    this.subscriber.disconnect();
  }
}
