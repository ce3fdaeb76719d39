/**
 * The byte layout of the shared slots. Private to src/state: every other folder
 * reads and writes these cells through the typed views (ServerCells, ServiceCells,
 * MetricCells, LimiterTable), so a cell can move or be added here alone.
 */

/** The arrays the views read; SharedState holds them. */
export interface SlotArrays {
  readonly serverCapacity: number;
  readonly serverInts: Int32Array;
  readonly serverFloats: Float64Array;
  readonly serviceInts: Int32Array;
  readonly threadInFlight: Int32Array;
}

/** Int32 cells of a server slot. */
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
  /** Per-slot spin lock for multi-cell updates. */
  LOCK: 11,
  /** Totals for the API and dashboard. */
  REQUESTS: 12,
  FAILURES: 13,
  /** Configured weight and connection limit, here so API changes reach every thread at once. */
  WEIGHT: 14,
  MAX_CONNECTIONS: 15,
  /** Rolling window of the circuit breaker: WINDOW_BUCKETS × (bucket number, total, failures). */
  WINDOW: 16,
} as const;
export const WINDOW_BUCKETS = 10;
export const SERVER_INTS = S.WINDOW + WINDOW_BUCKETS * 3;

/** Float64 cells of a server slot. */
export const SF = {
  EJECTED_UNTIL: 0,
  CB_OPEN_UNTIL: 1,
  /** Peak-EWMA latency in ms and when it was last updated. */
  EWMA: 2,
  EWMA_AT: 3,
  /** When the server last became usable (slow start ramps from here). */
  USABLE_SINCE: 4,
} as const;
export const SERVER_FLOATS = 5;

/** Int32 cells of a service slot. */
export const V = {
  /** Rotation counter for round-robin style policies. */
  COUNTER: 0,
  LOCK: 1,
  QUEUE_LENGTH: 2,
  /** Bumped whenever a server frees capacity; queued requests wait on it. */
  RELEASES: 3,
  /** Requests and retries in the current budget second. */
  BUDGET_SECOND: 4,
  BUDGET_REQUESTS: 5,
  BUDGET_RETRIES: 6,
  BUDGET_PREV_REQUESTS: 7,
} as const;
export const SERVICE_INTS = 8;
