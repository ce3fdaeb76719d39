/**
 * The cells of the local rate-limit table: a fixed-size open-addressing hash table
 * in a SharedArrayBuffer, so every thread counts in it and memory never grows.
 * Slot 0 holds the table's random hash seed; every other slot holds a 64-bit key
 * hash and the key's TAT in microseconds, both updated with compare-and-swap. Idle
 * keys expire by themselves (a TAT in the past is a free slot); when all probed
 * slots are live, the key that went quiet longest is evicted — a flood of distinct
 * clients can only make old keys forget, never exhaust memory.
 *
 * What a TAT means (GCRA) and how keys are hashed is src/guard/rate-limit-store.ts's.
 */
import { randomBytes } from 'node:crypto';

/** Bytes per slot: key hash and TAT, 8 bytes each. */
export const LIMITER_SLOT_BYTES = 16;
/** Slots looked at for a key before one is evicted. */
const PROBES = 8;

export class LimiterTable {
  private readonly cells: BigInt64Array;
  /** Usable slots (slot 0 of the buffer holds the hash seed). */
  readonly slots: number;
  /** Random, the same for every thread: clients cannot choose keys that collide with another's. */
  readonly seed: bigint;

  /** `buffer` is shared by every thread; the first to open it writes the seed. */
  constructor(buffer: SharedArrayBuffer) {
    this.cells = new BigInt64Array(buffer);
    this.slots = this.cells.length / 2 - 1;
    if (this.slots < PROBES) throw new RangeError(`a rate-limit table needs at least ${PROBES + 1} slots`);
    const fresh = randomBytes(8).readBigInt64LE() | 1n;
    const stored = Atomics.compareExchange(this.cells, 0, 0n, fresh);
    this.seed = stored === 0n ? fresh : stored;
  }

  /** A buffer for `slots` keys (plus the seed slot). */
  static allocate(slots: number): SharedArrayBuffer {
    return new SharedArrayBuffer((slots + 1) * LIMITER_SLOT_BYTES);
  }

  /**
   * The slot of key hash `hash` (non-zero): the one holding it among the probed slots,
   * else a free or expired one, else the quietest one, taken over for it (its TAT
   * cleared when still in the future). Undefined when another thread took that slot
   * first: look again.
   */
  claim(hash: bigint, nowUs: bigint): number | undefined {
    const start = Number(BigInt.asUintN(32, hash) % BigInt(this.slots));
    let free = -1;
    let oldest = -1;
    let oldestTat = 0n;
    for (let p = 0; p < PROBES; p++) {
      const c = 2 + 2 * ((start + p) % this.slots);
      const k = Atomics.load(this.cells, c);
      if (k === hash) return c;
      const tat = Atomics.load(this.cells, c + 1);
      if (free < 0 && (k === 0n || tat <= nowUs)) free = c;
      if (oldest < 0 || tat < oldestTat) {
        oldest = c;
        oldestTat = tat;
      }
    }
    // A new key takes a free or expired slot (its old TAT is in the past, so it reads as
    // fresh), else evicts the key that went quiet longest and clears that key's TAT.
    const c = free >= 0 ? free : oldest;
    const previousKey = Atomics.load(this.cells, c);
    const previousTat = Atomics.load(this.cells, c + 1);
    if (Atomics.compareExchange(this.cells, c, previousKey, hash) !== previousKey) return undefined;
    if (previousTat > nowUs) Atomics.compareExchange(this.cells, c + 1, previousTat, 0n);
    return c;
  }

  /** The TAT (µs) stored in a slot claim() answered. */
  tat(slot: number): bigint {
    return Atomics.load(this.cells, slot + 1);
  }

  /** Stores `next` as the slot's TAT if it is still `expected` and the slot still holds `hash`. */
  replaceTat(slot: number, hash: bigint, expected: bigint, next: bigint): boolean {
    return Atomics.compareExchange(this.cells, slot + 1, expected, next) === expected && Atomics.load(this.cells, slot) === hash;
  }
}
