/**
 * Retries allowed as a fraction of recent requests, counted per second in the
 * service's shared slot, so that during an outage retries add at most
 * `budget` × traffic (plus a small floor) instead of multiplying it.
 */
import { type SharedState, V } from '../runtime/shared-state.ts';

export class RetryBudget {
  private readonly ints: Int32Array;
  private readonly base: number;

  private readonly ratio: number;
  private readonly floorPerSecond: number;

  constructor(state: SharedState, slot: number, ratio: number, floorPerSecond: number) {
    this.ratio = ratio;
    this.floorPerSecond = floorPerSecond;
    this.ints = state.serviceInts;
    this.base = state.serviceIndex(slot, 0);
  }

  private roll(nowMs: number): void {
    const second = Math.floor(nowMs / 1000) | 0;
    const seen = Atomics.load(this.ints, this.base + V.BUDGET_SECOND);
    if (seen === second) return;
    if (Atomics.compareExchange(this.ints, this.base + V.BUDGET_SECOND, seen, second) !== seen) return;
    const lastSecond = Atomics.exchange(this.ints, this.base + V.BUDGET_REQUESTS, 0);
    // A gap of more than a second means nothing was counted in the second just before.
    const previous = second - seen === 1 ? lastSecond : 0;
    Atomics.store(this.ints, this.base + V.BUDGET_PREV_REQUESTS, previous);
    Atomics.store(this.ints, this.base + V.BUDGET_RETRIES, 0);
  }

  recordRequest(nowMs: number): void {
    this.roll(nowMs);
    Atomics.add(this.ints, this.base + V.BUDGET_REQUESTS, 1);
  }

  private limit(): number {
    const recent = Math.max(Atomics.load(this.ints, this.base + V.BUDGET_PREV_REQUESTS), Atomics.load(this.ints, this.base + V.BUDGET_REQUESTS));
    return this.floorPerSecond + this.ratio * recent;
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
