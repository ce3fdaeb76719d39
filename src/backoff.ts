/**
 * Exponential backoff with a cap: `base × 2^n`, at most `max`. Every waiting
 * loop in Velocity (retries, ejections, open circuits, reconnects, restarts)
 * uses this one rule. The exponent is bounded so a long failure streak never
 * overflows to Infinity (or NaN with a zero base).
 */
export function cappedBackoff(base: number, max: number, n: number): number {
  return Math.min(max, base * 2 ** Math.min(Math.max(n, 0), 52));
}
