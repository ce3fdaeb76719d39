/**
 * Timeouts for upstream connections without a timer per request: every item
 * carries a deadline (a `performance.now()` value, 0 = none), and one unref'd
 * interval looks at the items in use a few times a second. A deadline fires up
 * to one tick late, never early.
 */
import { performance } from 'node:perf_hooks';

export interface Expiring {
  /** performance.now() value at which `expire` is due; 0 when nothing is. */
  deadline: number;
  expire(now: number): void;
}

export const SWEEP_TICK_MS = 50;

export class DeadlineSweep {
  private readonly items = new Set<Expiring>();
  private timer: NodeJS.Timeout | undefined;

  add(item: Expiring): void {
    this.items.add(item);
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(), SWEEP_TICK_MS);
      this.timer.unref();
    }
  }

  /** The interval stays until a tick finds nothing to watch: items that come and go between ticks (a request at a time) make no timer each. */
  delete(item: Expiring): void {
    this.items.delete(item);
  }

  private sweep(): void {
    if (this.items.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    const now = performance.now();
    let due: Expiring[] | undefined;
    for (const item of this.items) if (item.deadline !== 0 && now >= item.deadline) (due ??= []).push(item);
    // Timers run before I/O in a loop turn: on a starved process the connect or the response that
    // beat the deadline may be waiting in this very turn. Give it that turn, then look again.
    if (due) setImmediate(() => this.expire(due, now));
  }

  private expire(due: Expiring[], now: number): void {
    for (const item of due) if (item.deadline !== 0 && now >= item.deadline && this.items.has(item)) item.expire(now);
  }
}
