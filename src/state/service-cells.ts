/**
 * The live state of one service slot, shared by every thread: the policy's
 * rotation counter, the service lock, the queue's length and wake-up counter, and
 * the retry budget's per-second counts.
 */
import { SERVICE_INTS, type SlotArrays, V } from './layout.ts';
import { incrementBelow, withSpinLock } from './spin-lock.ts';

export class ServiceCells {
  readonly slot: number;
  private readonly ints: Int32Array;
  private readonly base: number;

  constructor(state: SlotArrays, slot: number) {
    this.slot = slot;
    this.ints = state.serviceInts;
    this.base = slot * SERVICE_INTS;
  }

  /** Runs `fn` holding this service's spin lock (shared by every thread). */
  locked<T>(fn: () => T): T {
    return withSpinLock(this.ints, this.base + V.LOCK, fn);
  }

  /** The thread holding the lock now, if any. */
  get lockHolder(): number | undefined {
    const owner = Atomics.load(this.ints, this.base + V.LOCK);
    return owner === 0 ? undefined : owner - 1;
  }

  /** The next value of the rotation counter (non-negative, wraps). */
  nextCounter(): number {
    return Atomics.add(this.ints, this.base + V.COUNTER, 1) & 0x7fffffff;
  }

  // ---- queue ----

  /** Requests waiting on every thread. */
  get queueLength(): number {
    return Atomics.load(this.ints, this.base + V.QUEUE_LENGTH);
  }

  /** Takes a place in the queue unless `max` are already waiting. */
  tryEnqueue(max: number): boolean {
    return incrementBelow(this.ints, this.base + V.QUEUE_LENGTH, max);
  }

  dequeue(): void {
    Atomics.sub(this.ints, this.base + V.QUEUE_LENGTH, 1);
  }

  /** How many times capacity was freed so far: a waiter reads it, looks, then waits for it to move. */
  get releases(): number {
    return Atomics.load(this.ints, this.base + V.RELEASES);
  }

  /**
   * Wakes requests queued for this service on any thread: a server freed capacity. Only a queue's
   * pump reads the counter, and a request is counted in `queueLength` before its pump reads the
   * counter and looks for a server: when no request is queued there is nobody to wake, and the counter
   * need not move either (the usual request ends with one load here, not an add and a notify, which
   * takes a process-wide lock). Were one queued just after this reads the length, its look comes
   * after the capacity freed here (Atomics are sequentially consistent) and finds it.
   */
  signalRelease(): void {
    if (Atomics.load(this.ints, this.base + V.QUEUE_LENGTH) === 0) return;
    Atomics.add(this.ints, this.base + V.RELEASES, 1);
    Atomics.notify(this.ints, this.base + V.RELEASES);
  }

  /** Resolves when `releases` moves past `seen` or after `ms`; undefined when it already has. */
  waitForRelease(seen: number, ms: number): Promise<unknown> | undefined {
    const waited = Atomics.waitAsync(this.ints, this.base + V.RELEASES, seen, ms);
    return waited.async ? waited.value : undefined;
  }

  // ---- retry budget: requests and retries per second ----

  get budgetSecond(): number {
    return Atomics.load(this.ints, this.base + V.BUDGET_SECOND);
  }

  /** Moves the budget to `second` if it still stands at `seen`; true for the one thread that did it. */
  claimBudgetSecond(seen: number, second: number): boolean {
    return Atomics.compareExchange(this.ints, this.base + V.BUDGET_SECOND, seen, second) === seen;
  }

  /**
   * Starts a new second (by the thread that claimed it): the requests counted so far
   * become the previous second's when `adjacent`, else the previous second saw none.
   */
  rollBudget(adjacent: boolean): void {
    const counted = Atomics.exchange(this.ints, this.base + V.BUDGET_REQUESTS, 0);
    Atomics.store(this.ints, this.base + V.BUDGET_PREV_REQUESTS, adjacent ? counted : 0);
    Atomics.store(this.ints, this.base + V.BUDGET_RETRIES, 0);
  }

  countBudgetRequest(): void {
    Atomics.add(this.ints, this.base + V.BUDGET_REQUESTS, 1);
  }

  get budgetRequests(): number {
    return Atomics.load(this.ints, this.base + V.BUDGET_REQUESTS);
  }

  get budgetPreviousRequests(): number {
    return Atomics.load(this.ints, this.base + V.BUDGET_PREV_REQUESTS);
  }

  get budgetRetries(): number {
    return Atomics.load(this.ints, this.base + V.BUDGET_RETRIES);
  }

  /** Counts one retry unless `limit` were already taken this second. */
  tryTakeRetry(limit: number): boolean {
    return incrementBelow(this.ints, this.base + V.BUDGET_RETRIES, limit);
  }
}
