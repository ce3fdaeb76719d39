/**
 * Where rate-limit state lives, behind one narrow interface: the local table below
 * (default), Redis (redis-rate-limit-store.ts), or Redis with the local table as
 * fallback (failover-rate-limit-store.ts).
 *
 * The local table is a fixed-size open-addressing hash table in a SharedArrayBuffer,
 * so every thread counts in it and memory never grows: each slot holds a 64-bit key
 * hash and the key's TAT in microseconds, both updated with compare-and-swap. Idle
 * keys expire by themselves (a TAT in the past is a free slot); when all probed slots
 * are live, the key that went quiet longest is evicted — a flood of distinct clients
 * can only make old keys forget, never exhaust memory.
 */
import { randomBytes } from 'node:crypto';
import { fmix32 } from '../balancer/hash.ts';
import { gcra, type Limit, type Verdict } from './gcra.ts';

export interface RateLimitStore {
  /** Takes one request from `key`'s allowance. Throws (or rejects) when the store cannot answer. */
  take(key: string, limit: Limit, now: number): Verdict | Promise<Verdict>;
}

/** Slots looked at for a key before one is evicted. */
const PROBES = 8;
/** Bytes per slot: key hash and TAT, 8 bytes each. */
export const RATE_LIMIT_SLOT_BYTES = 16;

export class LocalRateLimitTable implements RateLimitStore {
  readonly cells: BigInt64Array;
  /** Usable slots (slot 0 of the buffer holds the hash seed). */
  readonly slots: number;
  private readonly seedA: number;
  private readonly seedB: number;

  /**
   * `buffer` is shared by every thread. The first thread to open it writes a random
   * hash seed into it, so clients cannot choose keys that collide with another's.
   */
  constructor(buffer: SharedArrayBuffer) {
    this.cells = new BigInt64Array(buffer);
    this.slots = this.cells.length / 2 - 1;
    if (this.slots < PROBES) throw new RangeError(`a rate-limit table needs at least ${PROBES + 1} slots`);
    const fresh = randomBytes(8).readBigInt64LE() | 1n;
    const stored = Atomics.compareExchange(this.cells, 0, 0n, fresh);
    const seed = stored === 0n ? fresh : stored;
    this.seedA = Number(BigInt.asUintN(32, seed));
    this.seedB = Number(BigInt.asUintN(32, seed >> 32n));
  }

  /** A buffer for `slots` keys (plus the seed slot). */
  static allocate(slots: number): SharedArrayBuffer {
    return new SharedArrayBuffer((slots + 1) * RATE_LIMIT_SLOT_BYTES);
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
    const start = Number(BigInt.asUintN(32, h) % BigInt(this.slots));
    for (;;) {
      let cell = -1;
      let free = -1;
      let oldest = -1;
      let oldestTat = 0n;
      for (let p = 0; p < PROBES; p++) {
        const c = 2 + 2 * ((start + p) % this.slots);
        const k = Atomics.load(this.cells, c);
        if (k === h) {
          cell = c;
          break;
        }
        const tat = Atomics.load(this.cells, c + 1);
        if (free < 0 && (k === 0n || tat <= nowUs)) free = c;
        if (oldest < 0 || tat < oldestTat) {
          oldest = c;
          oldestTat = tat;
        }
      }
      if (cell < 0) {
        // A new key takes a free or expired slot (its old TAT is in the past, so it reads as
        // fresh), else evicts the key that went quiet longest and clears that key's TAT.
        const c = free >= 0 ? free : oldest;
        const previousKey = Atomics.load(this.cells, c);
        const previousTat = Atomics.load(this.cells, c + 1);
        if (Atomics.compareExchange(this.cells, c, previousKey, h) !== previousKey) continue;
        if (previousTat > nowUs) Atomics.compareExchange(this.cells, c + 1, previousTat, 0n);
        cell = c;
      }
      const stored = Atomics.load(this.cells, cell + 1);
      const result = gcra(Number(stored) / 1000, now, limit);
      if (!result.allowed) return result;
      const next = BigInt(Math.round(result.tat * 1000));
      // Lost a race with another thread (same key, or the slot was taken over): look again.
      if (Atomics.compareExchange(this.cells, cell + 1, stored, next) === stored && Atomics.load(this.cells, cell) === h) return result;
    }
  }
}
