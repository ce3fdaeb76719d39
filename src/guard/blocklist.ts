/**
 * The dynamic blocklist: addresses and ranges blocked at runtime (by an operator
 * or by auto-ban), each with an optional expiry. Local by default; with Redis it
 * is shared — every entry is its own key with a TTL, and a pub/sub message makes
 * every instance reload the list at once.
 */
import type { Logger } from '../observe/logger.ts';
import { type Cidr, cidrContains, ipToBig, parseCidr } from './cidr.ts';
import type { RedisState } from './redis-state.ts';

export interface BlockEntry {
  cidr: string;
  reason: string;
  /** Epoch ms, or null for no expiry. */
  expiresAt: number | null;
  addedAt: number;
}

export class BlocklistError extends Error {
  readonly field: string;

  constructor(message: string, field: string) {
    super(message);
    this.name = 'BlocklistError';
    this.field = field;
  }
}

export class Blocklist {
  private entries = new Map<string, BlockEntry & { range: Cidr }>();
  private readonly redis: RedisState | undefined;
  private readonly log: Logger;
  private readonly timer: NodeJS.Timeout;

  constructor(log: Logger, redis?: RedisState) {
    this.log = log;
    this.redis = redis;
    if (redis) {
      redis.onBlocklistMessage(() => void this.sync());
      redis.client.on('ready', () => void this.sync());
    }
    this.timer = setInterval(() => this.expire(Date.now()), 1_000);
    this.timer.unref();
  }

  /** Blocks an address or range; `ttlMs` 0 or undefined = until removed. */
  async add(target: string, ttlMs: number | undefined, reason: string, now = Date.now()): Promise<BlockEntry> {
    const range = parseCidr(target);
    if (!range) throw new BlocklistError(`"${target}" is not an IP address or CIDR range`, 'cidr');
    if (ttlMs !== undefined && (!Number.isFinite(ttlMs) || ttlMs < 0)) throw new BlocklistError('ttl must be a positive duration', 'ttl');
    const entry: BlockEntry = { cidr: range.text, reason, expiresAt: ttlMs ? now + ttlMs : null, addedAt: now };
    this.entries.set(entry.cidr, { ...entry, range });
    this.log.warn({ cidr: entry.cidr, reason, expiresAt: entry.expiresAt }, 'blocked');
    if (this.redis?.available) {
      const key = this.redis.hashKey(`block:${entry.cidr}`);
      await (ttlMs ? this.redis.client.set(key, JSON.stringify(entry), 'PX', ttlMs) : this.redis.client.set(key, JSON.stringify(entry))).catch(() => undefined);
      await this.redis.publishBlocklist(`add ${entry.cidr}`).catch(() => undefined);
    }
    return entry;
  }

  async remove(target: string): Promise<boolean> {
    const range = parseCidr(target);
    const key = range?.text ?? target;
    const had = this.entries.delete(key);
    if (this.redis?.available) {
      const removed = await this.redis.client.del(this.redis.hashKey(`block:${key}`)).catch(() => 0);
      await this.redis.publishBlocklist(`remove ${key}`).catch(() => undefined);
      return had || removed > 0;
    }
    return had;
  }

  list(now = Date.now()): BlockEntry[] {
    this.expire(now);
    return [...this.entries.values()].map(({ range: _range, ...e }) => e);
  }

  /** The entry blocking this address, if any. */
  match(ip: string, now = Date.now()): BlockEntry | undefined {
    if (this.entries.size === 0) return undefined;
    const value = ipToBig(ip);
    if (value === undefined) return undefined;
    for (const e of this.entries.values()) {
      if (e.expiresAt !== null && e.expiresAt <= now) continue;
      if (cidrContains(e.range, value)) return e;
    }
    return undefined;
  }

  private expire(now: number): void {
    for (const [key, e] of this.entries) if (e.expiresAt !== null && e.expiresAt <= now) this.entries.delete(key);
  }

  /** Replaces the local list with Redis's. */
  async sync(): Promise<void> {
    const redis = this.redis;
    if (!redis?.available) return;
    try {
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, found] = await redis.client.scan(cursor, 'MATCH', redis.hashKey('block:*'), 'COUNT', 500);
        cursor = next;
        keys.push(...found);
      } while (cursor !== '0');
      const values = keys.length ? await redis.client.mget(...keys) : [];
      const next = new Map<string, BlockEntry & { range: Cidr }>();
      for (const v of values) {
        if (!v) continue;
        const entry = JSON.parse(v) as BlockEntry;
        const range = parseCidr(entry.cidr);
        if (range) next.set(entry.cidr, { ...entry, range });
      }
      this.entries = next;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'blocklist sync from redis failed; keeping the local list');
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
