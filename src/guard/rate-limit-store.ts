/**
 * Where rate-limit state lives. The local table is a fixed-size open-addressing
 * hash table in shared memory (every thread counts in it, memory never grows):
 * each slot holds a 64-bit key hash and the key's TAT in microseconds, updated
 * with compare-and-swap. Idle keys simply expire (a TAT in the past is free).
 */
import { gcra, type Limit, type Verdict } from './gcra.ts';

export interface RateLimitStore {
  /** Takes one request from `key`'s allowance. */
  take(key: string, limit: Limit, now: number): Verdict | Promise<Verdict>;
}

/** Two 32-bit FNV-1a hashes with different seeds, as one 64-bit key. */
export function hash64(key: string): bigint {
  let a = 0x811c9dc5;
  let b = 0x1505;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = (Math.imul(b, 33) ^ c) >>> 0;
  }
  const h = (BigInt(a) << 32n) | BigInt(b);
  return h === 0n ? 1n : BigInt.asIntN(64, h);
}

const PROBES = 8;

export class LocalRateLimitTable implements RateLimitStore {
  readonly cells: BigInt64Array;
  private readonly slots: number;

  /** `buffer` is shared by every thread; 16 bytes per slot. */
  constructor(buffer: SharedArrayBuffer) {
    this.cells = new BigInt64Array(buffer);
    this.slots = this.cells.length / 2;
  }

  static allocate(slots: number): SharedArrayBuffer {
    return new SharedArrayBuffer(slots * 16);
  }

  take(key: string, limit: Limit, now: number): Verdict {
    const h = hash64(key);
    const nowUs = BigInt(Math.round(now * 1000));
    const start = Number(BigInt.asUintN(32, h) % BigInt(this.slots));
    for (;;) {
      let slot = -1;
      let free = -1;
      let oldest = -1;
      let oldestTat = 0n;
      for (let p = 0; p < PROBES; p++) {
        const i = (start + p) % this.slots;
        const k = Atomics.load(this.cells, i * 2);
        if (k === h) {
          slot = i;
          break;
        }
        const tat = Atomics.load(this.cells, i * 2 + 1);
        if (free < 0 && (k === 0n || tat <= nowUs)) free = i;
        if (oldest < 0 || tat < oldestTat) {
          oldest = i;
          oldestTat = tat;
        }
      }
      if (slot < 0) {
        // A new key takes a free or expired slot, else evicts the key that went quiet longest.
        const i = free >= 0 ? free : oldest;
        const old = Atomics.load(this.cells, i * 2);
        if (Atomics.compareExchange(this.cells, i * 2, old, h) !== old) continue;
        Atomics.store(this.cells, i * 2 + 1, 0n);
        slot = i;
      }
      const tatCell = slot * 2 + 1;
      const stored = Atomics.load(this.cells, tatCell);
      const verdict = gcra(Number(stored) / 1000, now, limit);
      if (!verdict.allowed) return verdict;
      const next = BigInt(Math.round(verdict.tat * 1000));
      if (Atomics.compareExchange(this.cells, tatCell, stored, next) === stored) {
        // The slot may have been taken over by another key meanwhile; then try again.
        if (Atomics.load(this.cells, slot * 2) === h) return verdict;
      }
    }
  }
}
