/**
 * Retries allowed as a fraction of recent requests, counted per second in the
 * service's shared slot, so that during an outage retries add at most
 * `budget` × traffic (plus a small floor) instead of multiplying it.
 */
import type { ServiceCells } from '../state/service-cells.ts';

export class RetryBudget {
  private readonly cells: ServiceCells;
  private readonly ratio: number;
  private readonly floorPerSecond: number;

  constructor(cells: ServiceCells, ratio: number, floorPerSecond: number) {
    this.cells = cells;
    this.ratio = ratio;
    this.floorPerSecond = floorPerSecond;
  }

  private roll(nowMs: number): void {
    const second = Math.floor(nowMs / 1000) | 0;
    const seen = this.cells.budgetSecond;
    if (seen === second) return;
    if (!this.cells.claimBudgetSecond(seen, second)) return;
    // A gap of more than a second means nothing was counted in the second just before.
    this.cells.rollBudget(second - seen === 1);
  }

  recordRequest(nowMs: number): void {
    this.roll(nowMs);
    this.cells.countBudgetRequest();
  }

  private limit(): number {
    const recent = Math.max(this.cells.budgetPreviousRequests, this.cells.budgetRequests);
    return this.floorPerSecond + this.ratio * recent;
  }

  /** Whether a retry would fit, without taking it. */
  hasRoom(nowMs: number): boolean {
    this.roll(nowMs);
    return this.cells.budgetRetries < this.limit();
  }

  /** Takes one retry from the budget; false when it is spent. */
  tryTake(nowMs: number): boolean {
    this.roll(nowMs);
    return this.cells.tryTakeRetry(this.limit());
  }
}
