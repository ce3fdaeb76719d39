/**
 * Where rate-limit state lives, behind one narrow interface: the local table below
 * (default), Redis (redis-rate-limit-store.ts), or Redis with the local table as
 * fallback (failover-rate-limit-store.ts).
 */
import { fmix32 } from '../balancer/hash.ts';
import { LimiterTable } from '../state/limiter-table.ts';
import { gcra, type Limit, type Verdict } from './gcra.ts';

export interface RateLimitStore {
  /** Takes one request from `key`'s allowance. Throws (or rejects) when the store cannot answer. */
  take(key: string, limit: Limit, now: number): Verdict | Promise<Verdict>;
}

/**
 * The local store: GCRA over the shared limiter table (src/state/limiter-table.ts),
 * keys hashed with the table's seed.
 */
export class LocalRateLimitTable implements RateLimitStore {
  private readonly table: LimiterTable;
  private readonly seedA: number;
  private readonly seedB: number;

  constructor(buffer: SharedArrayBuffer) {
    this.table = new LimiterTable(buffer);
    this.seedA = Number(BigInt.asUintN(32, this.table.seed));
    this.seedB = Number(BigInt.asUintN(32, this.table.seed >> 32n));
  }

  /** A buffer for `slots` keys. */
  static allocate(slots: number): SharedArrayBuffer {
    return LimiterTable.allocate(slots);
  }

  /** Keys the table holds at most. */
  get slots(): number {
    return this.table.slots;
  }

  /** Two seeded FNV-1a lanes, finalized, as one non-zero 64-bit key. */
  hash64(key: string): bigint {
    let a = 0x811c9dc5 ^ this.seedA;
    let b = 0x050c5d1f ^ this.seedB;
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x01000193) + 0x9e3779b9;
    }
    const h = BigInt.asIntN(64, (BigInt(fmix32(a)) << 32n) | BigInt(fmix32(b ^ a)));
    return h === 0n ? 1n : h;
  }

  take(key: string, limit: Limit, now: number): Verdict {
    const h = this.hash64(key);
    const nowUs = BigInt(Math.round(now * 1000));
    for (;;) {
      const slot = this.table.claim(h, nowUs);
      if (slot === undefined) continue;
      const stored = this.table.tat(slot);
      const result = gcra(Number(stored) / 1000, now, limit);
      if (!result.allowed) return result;
      // Lost a race with another thread (same key, or the slot was taken over): look again.
      if (this.table.replaceTat(slot, h, stored, BigInt(Math.round(result.tat * 1000)))) return result;
    }
  }
}
