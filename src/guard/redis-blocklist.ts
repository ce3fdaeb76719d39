/**
 * One blocklist for every instance: each entry is a Redis key holding its JSON
 * with the entry's TTL, and every change is published so the other instances apply
 * it at once (well within a second). Each instance answers requests from its own
 * in-memory mirror, never from Redis. After every (re)subscription the mirror is
 * rebuilt from the keys, so messages missed while disconnected are caught up on;
 * changes made while Redis was unreachable apply locally at once and are written
 * when it is back.
 */

import { parseCidr } from '../cidr.ts';
import type { Logger } from '../observe/logger.ts';
import { type BlockEntry, type Blocklist, BlocklistError, type BlockSource, blockEntry, MAX_BLOCK_ENTRIES, MemoryBlocklist, type Stored } from './blocklist.ts';
import type { RedisClient } from './redis-clients.ts';
import type { RedisConnection } from './redis-connection.ts';

type Change = { op: 'add'; entry: BlockEntry; ttlMs: number | null } | { op: 'remove'; cidr: string };

const CHANNEL = 'blocklist';
const escapeGlob = (s: string) => s.replace(/[*?[\]\\]/g, '\\$&');

export class RedisBlocklist implements Blocklist {
  private readonly local: MemoryBlocklist;
  private readonly redis: RedisConnection;
  private readonly log: Logger;
  /** Changes not yet written to Redis, latest per entry. */
  private readonly pending = new Map<string, Change>();
  private synced: Promise<void> = Promise.resolve();
  /** Copies from Redis under way, and the published changes heard meanwhile (applied again on top of the copy, which may predate them). */
  private copying = 0;
  private heard: (() => void)[] = [];
  private retry: NodeJS.Timeout | undefined;

  constructor(redis: RedisConnection, log: Logger) {
    this.redis = redis;
    this.log = log;
    this.local = new MemoryBlocklist(log);
    redis.subscribe(
      CHANNEL,
      (message) => this.apply(message),
      () => {
        this.synced = this.resync();
      },
    );
  }

  get size(): number {
    return this.local.size;
  }

  async add(target: string, ttlMs?: number, reason?: string, source?: BlockSource): Promise<BlockEntry> {
    const entry = await this.local.add(target, ttlMs, reason, source);
    await this.share({ op: 'add', entry, ttlMs: null });
    return entry;
  }

  async remove(target: string): Promise<boolean> {
    const had = this.local.delete(target);
    const range = parseCidr(target);
    if (!range) return had;
    const removed = await this.share({ op: 'remove', cidr: range.text });
    return had || removed;
  }

  list(): BlockEntry[] {
    return this.local.list();
  }

  match(ip: bigint, now?: number): BlockEntry | undefined {
    return this.local.match(ip, now);
  }

  /** Settles when the latest copy from Redis has been taken (or failed). */
  ready(): Promise<void> {
    return this.synced;
  }

  /** Writes a change and tells the other instances; keeps it for later when Redis cannot take it. Whether Redis had the entry (for removals). */
  private async share(change: Change): Promise<boolean> {
    const cidr = change.op === 'add' ? change.entry.cidr : change.cidr;
    let message = change;
    if (change.op === 'add') {
      // The time left is what travels, so instances whose clocks differ expire it together.
      const ttlMs = change.entry.expiresAt === null ? null : change.entry.expiresAt - Date.now();
      if (ttlMs !== null && ttlMs <= 0) return false;
      message = { ...change, ttlMs };
    }
    if (!this.redis.usable()) return this.keep(cidr, message);
    try {
      const key = this.redis.key(`block:${cidr}`);
      const multi = this.redis.client.multi();
      if (message.op === 'remove') multi.del(key);
      else if (message.ttlMs === null) multi.set(key, JSON.stringify(message.entry));
      else multi.set(key, JSON.stringify(message.entry), 'PX', Math.ceil(message.ttlMs));
      multi.publish(this.redis.key(CHANNEL), JSON.stringify(message));
      const results = await multi.exec();
      this.pending.delete(cidr);
      return message.op === 'add' || Number(results?.[0]?.[1]) > 0;
    } catch (err) {
      this.redis.failed(err as Error);
      return this.keep(cidr, message);
    }
  }

  private keep(cidr: string, change: Change): false {
    if (this.pending.has(cidr) || this.pending.size < MAX_BLOCK_ENTRIES) this.pending.set(cidr, change);
    return false;
  }

  /** A change published by an instance (this one included: applying it again changes nothing). */
  private apply(text: string): void {
    try {
      const change = JSON.parse(text) as Change;
      const stored = change.op === 'add' ? this.mirrored(change.entry, change.ttlMs) : undefined;
      const apply = () => (stored ? this.local.put(stored) : this.local.delete((change as { cidr: string }).cidr));
      apply();
      if (this.copying > 0) this.heard.push(apply);
    } catch (err) {
      if (!(err instanceof BlocklistError)) this.log.warn({ err: (err as Error).message }, 'ignored a malformed blocklist message');
    }
  }

  private mirrored(entry: BlockEntry, ttlMs: number | null): Stored {
    const stored = blockEntry(entry.cidr, ttlMs ?? undefined, String(entry.reason), entry.source === 'auto-ban' ? 'auto-ban' : 'operator', Date.now());
    return { ...stored, addedAt: Number(entry.addedAt) || stored.addedAt };
  }

  /** Copies the shared list; tries again each second until that works. */
  private async resync(): Promise<void> {
    clearTimeout(this.retry);
    if (await this.copyFromRedis()) return;
    this.retry = setTimeout(() => {
      this.synced = this.resync();
    }, 1_000);
    this.retry.unref();
  }

  /** Writes what waited, then replaces the mirror with every entry in Redis. */
  private async copyFromRedis(): Promise<boolean> {
    if (!this.redis.usable()) return false;
    for (const change of [...this.pending.values()]) await this.share(change);
    if (this.pending.size > 0) return false;
    this.copying++;
    try {
      const entries: Stored[] = [];
      // A cluster spreads the keys over its masters: each is scanned, and read, on its own.
      for (const node of this.redis.keyHolders()) entries.push(...(await this.readEntries(node)));
      this.local.replace(entries);
      // A change published while the keys were read may be missing from them (after a failover every
      // instance copies while others write what waited): what was heard meanwhile goes on top.
      for (const apply of this.heard) {
        try {
          apply();
        } catch {} // the list is full: put() has logged it
      }
      this.log.debug({ entries: entries.length }, 'blocklist copied from redis');
      return true;
    } catch (err) {
      this.redis.failed(err as Error);
      return false;
    } finally {
      if (--this.copying === 0) this.heard = [];
    }
  }

  /** Every blocklist entry one Redis server holds. */
  private async readEntries(node: RedisClient): Promise<Stored[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', `${escapeGlob(this.redis.key('block:'))}*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0');
    const pipeline = node.pipeline();
    for (const key of keys) pipeline.get(key).pttl(key);
    const results = (await pipeline.exec()) ?? [];
    const entries: Stored[] = [];
    for (let i = 0; i < keys.length; i++) {
      const value = results[2 * i]?.[1] as string | null;
      const pttl = Number(results[2 * i + 1]?.[1]);
      if (!value || pttl === -2) continue;
      try {
        entries.push(this.mirrored(JSON.parse(value) as BlockEntry, pttl > 0 ? pttl : null));
      } catch {
        this.log.warn({ key: keys[i] }, 'ignored a malformed blocklist entry in redis');
      }
    }
    return entries;
  }

  close(): void {
    clearTimeout(this.retry);
    this.local.close();
  }
}
