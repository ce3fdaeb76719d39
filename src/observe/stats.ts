/** Counts, error rate and latency percentiles from access-log rows, the same for every store. */
import type { StatRow } from './log-store.ts';

export type GroupBy = 'service' | 'server' | 'status' | 'minute';

export interface StatGroup {
  key: string;
  count: number;
  errors: number;
  error_rate: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}

function keyOf(row: StatRow, by: GroupBy): string {
  switch (by) {
    case 'service':
      return row.service ?? '(none)';
    case 'server':
      return row.server ? `${row.service ?? '(none)'}/${row.server}` : `${row.service ?? '(none)'}/(none)`;
    case 'status':
      return String(row.status);
    case 'minute':
      return new Date(Math.floor(row.time / 60_000) * 60_000).toISOString();
  }
}

const round = (n: number) => Math.round(n * 1000) / 1000;

export function computeStats(rows: readonly StatRow[], by: GroupBy): StatGroup[] {
  const groups = new Map<string, { durations: number[]; errors: number }>();
  for (const row of rows) {
    const key = keyOf(row, by);
    let g = groups.get(key);
    if (!g) {
      g = { durations: [], errors: 0 };
      groups.set(key, g);
    }
    g.durations.push(row.totalMs);
    if (row.status >= 500) g.errors++;
  }
  return [...groups.entries()]
    .map(([key, g]) => {
      const sorted = g.durations.sort((a, b) => a - b);
      return {
        key,
        count: sorted.length,
        errors: g.errors,
        error_rate: round(g.errors / sorted.length),
        p50_ms: round(percentile(sorted, 50)),
        p95_ms: round(percentile(sorted, 95)),
        p99_ms: round(percentile(sorted, 99)),
      };
    })
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
