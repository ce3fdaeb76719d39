/**
 * The dynamic blocklist: addresses and ranges blocked at runtime — by an operator
 * (the programmatic API below, exposed at /api/v1/blocklist) or by auto-ban — each
 * with an optional expiry. MemoryBlocklist is this instance's; RedisBlocklist
 * (redis-blocklist.ts) shares one list between every instance.
 */

import { type Cidr, cidrContains, parseCidr } from '../cidr.ts';
import type { Logger } from '../observe/logger.ts';

export type BlockSource = 'operator' | 'auto-ban';

export interface BlockEntry {
  /** Canonical address or range (`198.51.100.7`, `10.0.0.0/8`, `2001:db8::/32`). */
  cidr: string;
  reason: string;
  source: BlockSource;
  /** Epoch ms, or null for no expiry. */
  expiresAt: number | null;
  addedAt: number;
}

export interface Blocklist {
  /**
   * Blocks an address or CIDR range for `ttlMs` (undefined or 0: until removed).
   * Adding an entry that exists replaces it. Throws BlocklistError on bad input.
   */
  add(target: string, ttlMs?: number, reason?: string, source?: BlockSource): Promise<BlockEntry>;
  /** Unblocks an entry (by the text it was added with, or its canonical form); false when it was not there. */
  remove(target: string): Promise<boolean>;
  /** Current entries, expired ones left out. */
  list(): BlockEntry[];
  /** The entry covering an address (as from ipToBig), if any. */
  match(ip: bigint, now?: number): BlockEntry | undefined;
  readonly size: number;
  close(): void;
}

export class BlocklistError extends Error {
  readonly field: string;

  constructor(message: string, field: string) {
    super(message);
    this.name = 'BlocklistError';
    this.field = field;
  }
}

/** The shared store behind a blocklist (etcd in fleet mode) did not take a change: it may not have been made. */
export class BlocklistUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BlocklistUnavailableError';
  }
}

/** Entries beyond this are refused, so a flood of auto-bans (IPv6 clients are cheap) cannot exhaust memory. */
export const MAX_BLOCK_ENTRIES = 100_000;

/** An entry with its parsed range. */
export type Stored = BlockEntry & { range: Cidr };

/** Checks an add() call and builds its entry. */
export function blockEntry(target: string, ttlMs: number | undefined, reason: string, source: BlockSource, now: number): Stored {
  const range = typeof target === 'string' ? parseCidr(target) : undefined;
  if (!range) throw new BlocklistError(`"${target}" is not an IP address or CIDR range; expected e.g. 198.51.100.7, 10.0.0.0/8 or 2001:db8::/32`, 'cidr');
  if (ttlMs !== undefined && !(Number.isFinite(ttlMs) && ttlMs >= 0)) throw new BlocklistError('ttl must be a duration of 0 or more (0 = until removed)', 'ttl');
  return { cidr: range.text, reason, source, expiresAt: ttlMs ? now + ttlMs : null, addedAt: now, range };
}

const publicEntry = ({ range: _range, ...entry }: Stored): BlockEntry => entry;

export class MemoryBlocklist implements Blocklist {
  /** Single addresses, by their 128-bit value: one lookup per request however many are banned. */
  private exact = new Map<bigint, Stored>();
  /** Ranges, checked one by one (operators add few). */
  private ranges = new Map<string, Stored>();
  private readonly log: Logger;
  private readonly timer: NodeJS.Timeout;
  private fullLogged = false;

  constructor(log: Logger) {
    this.log = log;
    this.timer = setInterval(() => this.expire(Date.now()), 1_000);
    this.timer.unref();
  }

  get size(): number {
    return this.exact.size + this.ranges.size;
  }

  async add(target: string, ttlMs?: number, reason = 'added by an operator', source: BlockSource = 'operator'): Promise<BlockEntry> {
    const entry = blockEntry(target, ttlMs, reason, source, Date.now());
    this.put(entry);
    this.log.warn({ cidr: entry.cidr, reason, source, expiresAt: entry.expiresAt }, 'blocked');
    return publicEntry(entry);
  }

  async remove(target: string): Promise<boolean> {
    return this.delete(target);
  }

  list(now = Date.now()): BlockEntry[] {
    this.expire(now);
    return [...this.exact.values(), ...this.ranges.values()].map(publicEntry);
  }

  match(ip: bigint, now = Date.now()): BlockEntry | undefined {
    const hit = this.exact.get(ip);
    if (hit && (hit.expiresAt === null || hit.expiresAt > now)) return hit;
    for (const e of this.ranges.values()) if ((e.expiresAt === null || e.expiresAt > now) && cidrContains(e.range, ip)) return e;
    return undefined;
  }

  /** Stores an entry as is (used when mirroring a shared list). */
  put(entry: Stored): void {
    const table = entry.range.bits === 128 ? this.exact : this.ranges;
    const key = entry.range.bits === 128 ? entry.range.base : entry.cidr;
    if (!(table as Map<unknown, Stored>).has(key) && this.size >= MAX_BLOCK_ENTRIES) {
      if (!this.fullLogged) this.log.error({ max: MAX_BLOCK_ENTRIES }, 'the blocklist is full; new entries are refused until some expire');
      this.fullLogged = true;
      throw new BlocklistError(`the blocklist is full (${MAX_BLOCK_ENTRIES} entries)`, 'cidr');
    }
    (table as Map<unknown, Stored>).set(key, entry);
  }

  /** Removes an entry by any spelling of it; false when it was not there. */
  delete(target: string): boolean {
    const range = parseCidr(target);
    if (!range) return false;
    return range.bits === 128 ? this.exact.delete(range.base) : this.ranges.delete(range.text);
  }

  /** Replaces every entry (a fresh copy of the shared list). */
  replace(entries: Iterable<Stored>): void {
    this.exact = new Map();
    this.ranges = new Map();
    for (const e of entries) if (this.size < MAX_BLOCK_ENTRIES) this.put(e);
  }

  private expire(now: number): void {
    for (const table of [this.exact, this.ranges] as Map<unknown, Stored>[]) {
      for (const [key, e] of table) if (e.expiresAt !== null && e.expiresAt <= now) table.delete(key);
    }
    if (this.size < MAX_BLOCK_ENTRIES) this.fullLogged = false;
  }

  close(): void {
    clearInterval(this.timer);
  }
}
