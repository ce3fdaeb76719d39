/**
 * GCRA (the generic cell rate algorithm): one "theoretical arrival time" per key.
 * A request is allowed when, after adding one emission interval, the TAT is at
 * most `burst` intervals ahead of now. Smooth — no window edge lets 2× through.
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
  /** Milliseconds until the bucket is full again. */
  resetMs: number;
  /** The TAT to store when allowed. */
  tat: number;
}

export function gcra(tat: number, now: number, limit: Limit): Verdict {
  const capacity = limit.intervalMs * limit.burst;
  const next = Math.max(tat, now) + limit.intervalMs;
  const ahead = next - now;
  if (ahead <= capacity + 1e-9) {
    return { allowed: true, remaining: Math.floor((capacity - ahead) / limit.intervalMs + 1e-9), retryAfterMs: 0, resetMs: ahead, tat: next };
  }
  const current = Math.max(tat, now) - now;
  return { allowed: false, remaining: 0, retryAfterMs: ahead - capacity, resetMs: current, tat };
}
