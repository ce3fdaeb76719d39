/**
 * The live state of one server slot, shared by every thread: health, admin state,
 * passive-health and circuit-breaker cells, counters, limits and latency. Named
 * reads and writes; where a cell is stays private to src/state.
 */
import { S, SERVER_FLOATS, SERVER_INTS, SF, type SlotArrays, WINDOW_BUCKETS } from './layout.ts';
import { incrementBelow, withSpinLock } from './spin-lock.ts';

export { WINDOW_BUCKETS };

/** What the admin and circuit cells hold. */
export const ADMIN_ENABLED = 0;
export const ADMIN_DRAINING = 1;
export const ADMIN_DISABLED = 2;
export const ADMIN_STATES = ['enabled', 'draining', 'disabled'] as const;
export type AdminState = (typeof ADMIN_STATES)[number];

export const CIRCUIT_CLOSED = 0;
export const CIRCUIT_OPEN = 1;
export const CIRCUIT_HALF_OPEN = 2;
export const CIRCUIT_STATES = ['closed', 'open', 'half-open'] as const;

/** The cells a balancing policy may keep per server. */
export type PolicyCell = 0 | 1;

export class ServerCells {
  readonly slot: number;
  private readonly ints: Int32Array;
  private readonly floats: Float64Array;
  private readonly i: number;
  private readonly f: number;
  private readonly threadCells: Int32Array;
  private readonly threadCell: number;

  constructor(state: SlotArrays, slot: number, thread: number) {
    this.slot = slot;
    this.ints = state.serverInts;
    this.floats = state.serverFloats;
    this.i = slot * SERVER_INTS;
    this.f = slot * SERVER_FLOATS;
    this.threadCells = state.threadInFlight;
    this.threadCell = thread * state.serverCapacity + slot;
  }

  private load(cell: number): number {
    return Atomics.load(this.ints, this.i + cell);
  }

  private store(cell: number, value: number): void {
    Atomics.store(this.ints, this.i + cell, value);
  }

  /** Runs `fn` holding this server's spin lock: changes that write several cells (circuit, ejection) happen whole. */
  locked<T>(fn: () => T): T {
    return withSpinLock(this.ints, this.i + S.LOCK, fn);
  }

  // ---- connections ----

  get inFlight(): number {
    return this.load(S.IN_FLIGHT);
  }

  /** Counts a request against this server on this thread; false when it is at its connection limit. */
  tryAcquire(): boolean {
    const max = this.maxConnections;
    if (max > 0) {
      if (!incrementBelow(this.ints, this.i + S.IN_FLIGHT, max)) return false;
    } else Atomics.add(this.ints, this.i + S.IN_FLIGHT, 1);
    // This thread's own cell: no other thread writes it while this one lives (others read it, or give
    // it back once this thread is gone), so a plain increment, not a call into the Atomics builtin.
    (this.threadCells[this.threadCell] as number)++;
    return true;
  }

  /** Gives back what tryAcquire took. */
  release(): void {
    Atomics.sub(this.ints, this.i + S.IN_FLIGHT, 1);
    (this.threadCells[this.threadCell] as number)--;
  }

  get configuredWeight(): number {
    return this.load(S.WEIGHT);
  }

  set configuredWeight(value: number) {
    this.store(S.WEIGHT, value);
  }

  get maxConnections(): number {
    return this.load(S.MAX_CONNECTIONS);
  }

  set maxConnections(value: number) {
    this.store(S.MAX_CONNECTIONS, value);
  }

  // ---- admin and active health ----

  /** 0 enabled, 1 draining, 2 disabled (see upstream/server.ts). */
  get admin(): number {
    return this.load(S.ADMIN);
  }

  /** Sets the admin state and answers the one before. */
  swapAdmin(value: number): number {
    return Atomics.exchange(this.ints, this.i + S.ADMIN, value);
  }

  /** Whether active health checks pass (always, when none are configured). */
  get activeUp(): boolean {
    return this.load(S.ACTIVE_UP) === 1;
  }

  set activeUp(up: boolean) {
    this.store(S.ACTIVE_UP, up ? 1 : 0);
  }

  /** When the server last became usable: slow start ramps from here. */
  get usableSince(): number {
    return this.floats[this.f + SF.USABLE_SINCE] as number;
  }

  set usableSince(at: number) {
    this.floats[this.f + SF.USABLE_SINCE] = at;
  }

  // ---- passive health ----

  get passiveFailures(): number {
    return this.load(S.PASSIVE_FAILS);
  }

  set passiveFailures(value: number) {
    this.store(S.PASSIVE_FAILS, value);
  }

  /** Counts one more failure in a row; answers the new count. */
  addPassiveFailure(): number {
    return Atomics.add(this.ints, this.i + S.PASSIVE_FAILS, 1) + 1;
  }

  get ejections(): number {
    return this.load(S.EJECTIONS);
  }

  set ejections(value: number) {
    this.store(S.EJECTIONS, value);
  }

  get ejectedUntil(): number {
    return this.floats[this.f + SF.EJECTED_UNTIL] as number;
  }

  set ejectedUntil(at: number) {
    this.floats[this.f + SF.EJECTED_UNTIL] = at;
  }

  // ---- circuit breaker ----

  /** 0 closed, 1 open, 2 half-open (see upstream/server.ts). */
  get circuitState(): number {
    return this.load(S.CB_STATE);
  }

  set circuitState(value: number) {
    this.store(S.CB_STATE, value);
  }

  get circuitTrials(): number {
    return this.load(S.CB_TRIALS);
  }

  set circuitTrials(value: number) {
    this.store(S.CB_TRIALS, value);
  }

  get circuitOpens(): number {
    return this.load(S.CB_OPENS);
  }

  set circuitOpens(value: number) {
    this.store(S.CB_OPENS, value);
  }

  get circuitFailures(): number {
    return this.load(S.CB_FAILS);
  }

  set circuitFailures(value: number) {
    this.store(S.CB_FAILS, value);
  }

  /** Counts one more failure in a row for the breaker; answers the new count. */
  addCircuitFailure(): number {
    return Atomics.add(this.ints, this.i + S.CB_FAILS, 1) + 1;
  }

  get circuitOpenUntil(): number {
    return this.floats[this.f + SF.CB_OPEN_UNTIL] as number;
  }

  set circuitOpenUntil(at: number) {
    this.floats[this.f + SF.CB_OPEN_UNTIL] = at;
  }

  /** The bucket number stored in window cell `b` (0 ≤ b < WINDOW_BUCKETS). */
  windowBucket(b: number): number {
    return this.load(S.WINDOW + b * 3);
  }

  windowTotal(b: number): number {
    return this.load(S.WINDOW + b * 3 + 1);
  }

  windowFailures(b: number): number {
    return this.load(S.WINDOW + b * 3 + 2);
  }

  /** Starts window cell `b` over for bucket number `bucket` (under the lock). */
  restartWindowBucket(b: number, bucket: number): void {
    this.store(S.WINDOW + b * 3 + 1, 0);
    this.store(S.WINDOW + b * 3 + 2, 0);
    this.store(S.WINDOW + b * 3, bucket);
  }

  countInWindowBucket(b: number, failed: boolean): void {
    Atomics.add(this.ints, this.i + S.WINDOW + b * 3 + 1, 1);
    if (failed) Atomics.add(this.ints, this.i + S.WINDOW + b * 3 + 2, 1);
  }

  clearWindow(): void {
    for (let cell = 0; cell < WINDOW_BUCKETS * 3; cell++) this.store(S.WINDOW + cell, 0);
  }

  // ---- policy cells, totals, latency ----

  policyCell(cell: PolicyCell): number {
    return this.load(cell === 0 ? S.POLICY_A : S.POLICY_B);
  }

  setPolicyCell(cell: PolicyCell, value: number): void {
    this.store(cell === 0 ? S.POLICY_A : S.POLICY_B, value);
  }

  /** Attempts sent to this server (API, dashboard, autoscaler). */
  get requests(): number {
    return this.load(S.REQUESTS);
  }

  get failures(): number {
    return this.load(S.FAILURES);
  }

  countRequest(failed: boolean): void {
    Atomics.add(this.ints, this.i + S.REQUESTS, 1);
    if (failed) Atomics.add(this.ints, this.i + S.FAILURES, 1);
  }

  /** Peak-EWMA latency in ms as last written (not decayed), and when. */
  get ewma(): number {
    return this.floats[this.f + SF.EWMA] as number;
  }

  get ewmaAt(): number {
    return this.floats[this.f + SF.EWMA_AT] as number;
  }

  setEwma(ms: number, at: number): void {
    this.floats[this.f + SF.EWMA] = ms;
    this.floats[this.f + SF.EWMA_AT] = at;
  }
}
