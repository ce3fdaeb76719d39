/**
 * Retries allowed as a fraction of recent requests, counted in windows of
 * WINDOW_MS in the service's shared slot, so that during an outage retries add
 * at most `budget` × traffic (plus a small floor) instead of multiplying it.
 *
 * The window is 10 s (Linkerd's retry-budget TTL), not 1 s: a server that
 * freezes holds its share of requests for a whole per-try timeout and releases
 * them as one burst of retries a second later, while the clients stuck on it
 * send fewer new requests. A 1-second budget measured against that second's
 * (shrunken) traffic refused part of the burst — a frozen server cost requests
 * although over any longer span retries stayed far below the budget (#22).
 */
import { type SharedState, V } from '../runtime/shared-state.ts';

export const WINDOW_MS = 10_000;

export class RetryBudget {
  private readonly ints: Int32Array;
  private readonly base: number;

  private readonly ratio: number;
  private readonly floorPerWindow: number;

  constructor(state: SharedState, slot: number, ratio: number, floorPerSecond: number) {
    this.ratio = ratio;
    this.floorPerWindow = floorPerSecond * (WINDOW_MS / 1000);
    this.ints = state.serviceInts;
    this.base = state.serviceIndex(slot, 0);
  }

  private roll(nowMs: number): void {
    // The BUDGET_* cells hold the window number and its counts.
    const window = Math.floor(nowMs / WINDOW_MS) | 0;
    const seen = Atomics.load(this.ints, this.base + V.BUDGET_SECOND);
    if (seen === window) return;
    if (Atomics.compareExchange(this.ints, this.base + V.BUDGET_SECOND, seen, window) !== seen) return;
    const lastWindow = Atomics.exchange(this.ints, this.base + V.BUDGET_REQUESTS, 0);
    // A gap of more than a window means nothing was counted in the window just before.
    const previous = window - seen === 1 ? lastWindow : 0;
    Atomics.store(this.ints, this.base + V.BUDGET_PREV_REQUESTS, previous);
    Atomics.store(this.ints, this.base + V.BUDGET_RETRIES, 0);
  }

  recordRequest(nowMs: number): void {
    this.roll(nowMs);
    Atomics.add(this.ints, this.base + V.BUDGET_REQUESTS, 1);
  }

  private limit(): number {
    const recent = Math.max(Atomics.load(this.ints, this.base + V.BUDGET_PREV_REQUESTS), Atomics.load(this.ints, this.base + V.BUDGET_REQUESTS));
    return this.floorPerWindow + this.ratio * recent;
  }

  /** Whether a retry would fit, without taking it. */
  hasRoom(nowMs: number): boolean {
    this.roll(nowMs);
    return Atomics.load(this.ints, this.base + V.BUDGET_RETRIES) < this.limit();
  }

  /** Takes one retry from the budget; false when it is spent. */
  tryTake(nowMs: number): boolean {
    this.roll(nowMs);
    const limit = this.limit();
    for (;;) {
      const used = Atomics.load(this.ints, this.base + V.BUDGET_RETRIES);
      if (used >= limit) return false;
      if (Atomics.compareExchange(this.ints, this.base + V.BUDGET_RETRIES, used, used + 1) === used) return true;
    }
  }
}
