/**
 * GCRA (the generic cell rate algorithm): one "theoretical arrival time" per key.
 * A request is allowed when, after adding one emission interval, the TAT is at
 * most `burst` intervals ahead of now. Smooth — no window edge lets 2× through.
 * The Lua script in redis-rate-limit-store.ts is the same arithmetic.
 */

export interface Limit {
  /** Milliseconds between requests at the steady rate. */
  intervalMs: number;
  burst: number;
}

export interface Verdict {
  allowed: boolean;
  /** Requests still allowed right now. */
  remaining: number;
  /** Milliseconds until the next request would be allowed (0 when allowed). */
  retryAfterMs: number;
  /** Milliseconds until the full burst is available again. */
  resetMs: number;
}

/** The verdict and the TAT to store (unchanged when refused). */
export interface GcraResult extends Verdict {
  tat: number;
}

/** Absorbs float error in `interval × burst` so exactly `burst` requests pass. */
const EPSILON = 1e-6;

export function gcra(tat: number, now: number, limit: Limit): GcraResult {
  const capacity = limit.intervalMs * limit.burst;
  const base = Math.max(tat, now);
  const ahead = base + limit.intervalMs - now;
  if (ahead <= capacity + EPSILON) {
    return { allowed: true, remaining: Math.floor((capacity - ahead) / limit.intervalMs + EPSILON), retryAfterMs: 0, resetMs: ahead, tat: base + limit.intervalMs };
  }
  return { allowed: false, remaining: 0, retryAfterMs: ahead - capacity, resetMs: base - now, tat };
}
