/**
 * State that every data-path thread must see exactly the same lives here, in
 * SharedArrayBuffers read and written with Atomics. One thread (the control
 * plane) allocates slots; any thread may update the counters in a slot.
 *
 * Times and averages are Float64 cells written with plain stores: 8-byte aligned
 * stores do not tear on the 64-bit platforms Node supports, and each such cell
 * has one logical writer at a time (guarded by an Int32 state word).
 */

/** Int32 fields of a server slot. */
export const S = {
  IN_FLIGHT: 0,
  /** 1 while active health checks pass (or none are configured). */
  ACTIVE_UP: 1,
  /** 0 enabled, 1 draining, 2 disabled. */
  ADMIN: 2,
  /** Passive health: consecutive failures and how often the server was ejected. */
  PASSIVE_FAILS: 3,
  EJECTIONS: 4,
  /** Circuit breaker: state (0 closed, 1 open, 2 half-open), trials in flight, opens in a row, failures in a row. */
  CB_STATE: 5,
  CB_TRIALS: 6,
  CB_OPENS: 7,
  CB_FAILS: 8,
  /** Two cells a balancing policy may keep per server (e.g. smooth WRR's current weight). */
  POLICY_A: 9,
  POLICY_B: 10,
  /** Consecutive active check results (+ successes, - failures), written by the checker only. */
  CHECK_STREAK: 11,
  /** Per-slot spin lock for multi-cell updates. */
  LOCK: 12,
  /** Totals for the API and dashboard. */
  REQUESTS: 13,
  FAILURES: 14,
  /** Configured weight and connection limit, here so API changes reach every thread at once. */
  WEIGHT: 15,
  MAX_CONNECTIONS: 16,
  /** Rolling window of the circuit breaker: WINDOW_BUCKETS × (second, total, failures). */
  WINDOW: 17,
} as const;
export const WINDOW_BUCKETS = 10;
const SERVER_INTS = S.WINDOW + WINDOW_BUCKETS * 3;

/** Float64 fields of a server slot. */
export const SF = {
  EJECTED_UNTIL: 0,
  CB_OPEN_UNTIL: 1,
  /** Peak-EWMA latency in ms and when it was last updated. */
  EWMA: 2,
  EWMA_AT: 3,
  /** When the server last became usable (slow start ramps from here). */
  USABLE_SINCE: 4,
} as const;
const SERVER_FLOATS = 5;

/** Int32 fields of a service slot. */
export const V = {
  /** Rotation counter for round-robin style policies. */
  COUNTER: 0,
  LOCK: 1,
  QUEUE_LENGTH: 2,
  /** Bumped whenever a server frees capacity; queued requests wait on it. */
  RELEASES: 3,
  /** Requests and retries in the current retry-budget window (retry-budget.ts). */
  BUDGET_SECOND: 4,
  BUDGET_REQUESTS: 5,
  BUDGET_RETRIES: 6,
  BUDGET_PREV_REQUESTS: 7,
} as const;
const SERVICE_INTS = 8;

export interface SharedStateBuffers {
  serverCapacity: number;
  serviceCapacity: number;
  maxThreads: number;
  serverInts: SharedArrayBuffer;
  serverFloats: SharedArrayBuffer;
  serviceInts: SharedArrayBuffer;
  threadInFlight: SharedArrayBuffer;
  /** Prometheus counters and histograms (BigInt64 cells, see src/observe/metrics.ts for the layout). */
  serverMetrics: SharedArrayBuffer;
  serviceMetrics: SharedArrayBuffer;
  globalMetrics: SharedArrayBuffer;
  /** The local rate-limit table (see src/guard/rate-limit-store.ts): 16 bytes a slot. */
  rateLimits: SharedArrayBuffer;
}

/** BigInt64 metric cells per server slot, per service slot, and process-wide. */
export const SERVER_METRIC_CELLS = 24;
export const SERVICE_METRIC_CELLS = 24;
export const GLOBAL_METRIC_CELLS = 16;

export class SharedState {
  readonly serverCapacity: number;
  readonly serviceCapacity: number;
  readonly maxThreads: number;
  readonly serverInts: Int32Array;
  readonly serverFloats: Float64Array;
  readonly serviceInts: Int32Array;
  /** In-flight per (thread, server) so a crashed thread's counts can be given back. */
  readonly threadInFlight: Int32Array;
  readonly serverMetrics: BigInt64Array;
  readonly serviceMetrics: BigInt64Array;
  readonly globalMetrics: BigInt64Array;
  readonly buffers: SharedStateBuffers;

  private readonly freeServerSlots: number[] = [];
  private readonly freeServiceSlots: number[] = [];

  constructor(buffers?: SharedStateBuffers, options: { servers?: number; services?: number; threads?: number; rateLimitSlots?: number } = {}) {
    this.buffers = buffers ?? {
      serverCapacity: options.servers ?? 4096,
      serviceCapacity: options.services ?? 512,
      maxThreads: options.threads ?? 64,
      serverInts: new SharedArrayBuffer((options.servers ?? 4096) * SERVER_INTS * 4),
      serverFloats: new SharedArrayBuffer((options.servers ?? 4096) * SERVER_FLOATS * 8),
      serviceInts: new SharedArrayBuffer((options.services ?? 512) * SERVICE_INTS * 4),
      threadInFlight: new SharedArrayBuffer((options.threads ?? 64) * (options.servers ?? 4096) * 4),
      serverMetrics: new SharedArrayBuffer((options.servers ?? 4096) * SERVER_METRIC_CELLS * 8),
      serviceMetrics: new SharedArrayBuffer((options.services ?? 512) * SERVICE_METRIC_CELLS * 8),
      globalMetrics: new SharedArrayBuffer(GLOBAL_METRIC_CELLS * 8),
      rateLimits: new SharedArrayBuffer((options.rateLimitSlots ?? 65_536) * 16),
    };
    this.serverCapacity = this.buffers.serverCapacity;
    this.serviceCapacity = this.buffers.serviceCapacity;
    this.maxThreads = this.buffers.maxThreads;
    this.serverInts = new Int32Array(this.buffers.serverInts);
    this.serverFloats = new Float64Array(this.buffers.serverFloats);
    this.serviceInts = new Int32Array(this.buffers.serviceInts);
    this.threadInFlight = new Int32Array(this.buffers.threadInFlight);
    this.serverMetrics = new BigInt64Array(this.buffers.serverMetrics);
    this.serviceMetrics = new BigInt64Array(this.buffers.serviceMetrics);
    this.globalMetrics = new BigInt64Array(this.buffers.globalMetrics);
    if (!buffers) {
      for (let i = this.serverCapacity - 1; i >= 0; i--) this.freeServerSlots.push(i);
      for (let i = this.serviceCapacity - 1; i >= 0; i--) this.freeServiceSlots.push(i);
    }
  }

  /** Control plane only: a fresh server slot, zeroed and marked up. */
  allocateServer(now: number): number {
    const slot = this.freeServerSlots.pop();
    if (slot === undefined) throw new Error(`server capacity (${this.serverCapacity}) exhausted`);
    this.serverInts.fill(0, slot * SERVER_INTS, (slot + 1) * SERVER_INTS);
    this.serverFloats.fill(0, slot * SERVER_FLOATS, (slot + 1) * SERVER_FLOATS);
    this.serverMetrics.fill(0n, slot * SERVER_METRIC_CELLS, (slot + 1) * SERVER_METRIC_CELLS);
    Atomics.store(this.serverInts, slot * SERVER_INTS + S.ACTIVE_UP, 1);
    this.serverFloats[slot * SERVER_FLOATS + SF.USABLE_SINCE] = now;
    return slot;
  }

  releaseServer(slot: number): void {
    this.freeServerSlots.push(slot);
  }

  allocateService(): number {
    const slot = this.freeServiceSlots.pop();
    if (slot === undefined) throw new Error(`service capacity (${this.serviceCapacity}) exhausted`);
    this.serviceInts.fill(0, slot * SERVICE_INTS, (slot + 1) * SERVICE_INTS);
    this.serviceMetrics.fill(0n, slot * SERVICE_METRIC_CELLS, (slot + 1) * SERVICE_METRIC_CELLS);
    return slot;
  }

  releaseService(slot: number): void {
    this.freeServiceSlots.push(slot);
  }

  serverIndex(slot: number, field: number): number {
    return slot * SERVER_INTS + field;
  }

  serverFloatIndex(slot: number, field: number): number {
    return slot * SERVER_FLOATS + field;
  }

  serviceIndex(slot: number, field: number): number {
    return slot * SERVICE_INTS + field;
  }

  /** Gives back the in-flight counts and spin locks a dead thread held. */
  releaseThread(thread: number): void {
    const base = thread * this.serverCapacity;
    for (let slot = 0; slot < this.serverCapacity; slot++) {
      const held = Atomics.exchange(this.threadInFlight, base + slot, 0);
      if (held !== 0) Atomics.sub(this.serverInts, slot * SERVER_INTS + S.IN_FLIGHT, held);
      Atomics.compareExchange(this.serverInts, slot * SERVER_INTS + S.LOCK, thread + 1, 0);
    }
    for (let slot = 0; slot < this.serviceCapacity; slot++) Atomics.compareExchange(this.serviceInts, slot * SERVICE_INTS + V.LOCK, thread + 1, 0);
  }
}

/** What this thread writes into a spin lock it holds: its thread index + 1, so a dead thread's locks can be freed. */
let lockOwner = 1;

/** Called once at the start of a data-path thread. */
export function setLockOwner(thread: number): void {
  lockOwner = thread + 1;
}

/** Runs `fn` holding a spin lock on `array[index]`. Critical sections here are a few loads and stores. */
export function withSpinLock<T>(array: Int32Array, index: number, fn: () => T): T {
  for (;;) {
    const holder = Atomics.compareExchange(array, index, 0, lockOwner);
    if (holder === 0) break;
    // Another thread holds it for a handful of instructions; yield the CPU briefly.
    Atomics.wait(array, index, holder, 1);
  }
  try {
    return fn();
  } finally {
    Atomics.store(array, index, 0);
    Atomics.notify(array, index, 1);
  }
}
