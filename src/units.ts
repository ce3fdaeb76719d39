/** Parsers for the human units used in config files: durations, sizes, rates. */

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
export const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** `250ms`, `2s`, `1.5m`, `1h`, `0` → milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const value = text.trim();
  if (value === '0') return 0;
  const m = DURATION_RE.exec(value);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * (DURATION_UNITS[m[2] as string] as number));
}

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, k: 1024, mb: 1024 ** 2, m: 1024 ** 2, gb: 1024 ** 3, g: 1024 ** 3 };
const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g)?$/i;

/** `64kb`, `1mb`, `512` (bytes) → bytes; undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const m = SIZE_RE.exec(text.trim());
  if (!m) return undefined;
  const unit = (m[2] ?? 'b').toLowerCase();
  return Math.round(Number(m[1]) * (SIZE_UNITS[unit] as number));
}

const RATE_PERIODS: Record<string, number> = {
  s: 1000,
  sec: 1000,
  second: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
};
const RATE_RE = /^(\d+(?:\.\d+)?)\s*\/\s*(\d*)\s*([a-z]+)$/i;

export interface Rate {
  /** Requests allowed per period. */
  count: number;
  /** Period in milliseconds. */
  periodMs: number;
}

/** `100/s`, `1000/m`, `5/10s` → a rate; undefined when malformed. */
export function parseRate(text: string): Rate | undefined {
  const m = RATE_RE.exec(text.trim());
  if (!m) return undefined;
  const count = Number(m[1]);
  const multiple = m[2] ? Number(m[2]) : 1;
  const period = RATE_PERIODS[(m[3] as string).toLowerCase()];
  const periodMs = period === undefined ? Number.NaN : period * multiple;
  // Digits past what a double holds (1e309/s, 1/1e309s) are not a rate: Infinity would reach the limiter's arithmetic.
  if (!(Number.isFinite(count) && count > 0 && Number.isFinite(periodMs) && periodMs > 0)) return undefined;
  return { count, periodMs };
}

/** `200`, `200-399`, `2xx` → an inclusive status range; undefined when malformed. */
export function parseStatusRange(text: string): { min: number; max: number } | undefined {
  const value = text.trim().toLowerCase();
  let m = /^([1-5])xx$/.exec(value);
  if (m) return { min: Number(m[1]) * 100, max: Number(m[1]) * 100 + 99 };
  m = /^(\d{3})(?:\s*-\s*(\d{3}))?$/.exec(value);
  if (!m) return undefined;
  const min = Number(m[1]);
  const max = m[2] ? Number(m[2]) : min;
  if (min < 100 || max > 599 || min > max) return undefined;
  return { min, max };
}
