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
import type { ServiceCells } from '../state/service-cells.ts';

export const WINDOW_MS = 10_000;

export class RetryBudget {
  private readonly cells: ServiceCells;
  private readonly ratio: number;
  private readonly floorPerWindow: number;

  constructor(cells: ServiceCells, ratio: number, floorPerSecond: number) {
    this.cells = cells;
    this.ratio = ratio;
    this.floorPerWindow = floorPerSecond * (WINDOW_MS / 1000);
  }

  private roll(nowMs: number): void {
    // The budget's "second" cells hold the window number.
    const window = Math.floor(nowMs / WINDOW_MS) | 0;
    const seen = this.cells.budgetSecond;
    if (seen === window) return;
    if (!this.cells.claimBudgetSecond(seen, window)) return;
    // A gap of more than a window means nothing was counted in the window just before.
    this.cells.rollBudget(window - seen === 1);
  }

  recordRequest(nowMs: number): void {
    this.roll(nowMs);
    this.cells.countBudgetRequest();
  }

  private limit(): number {
    const recent = Math.max(this.cells.budgetPreviousRequests, this.cells.budgetRequests);
    return this.floorPerWindow + this.ratio * recent;
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
