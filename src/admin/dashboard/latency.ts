/**
 * A small log-bucketed latency histogram for the dashboard's per-second
 * percentiles. Buckets grow by 10%, so any percentile is within ~5% of the true
 * value while memory stays fixed (no sample arrays that grow with traffic).
 */

const MIN_MS = 0.05;
const GROWTH = 1.1;
const LOG_GROWTH = Math.log(GROWTH);
/** 0.05 ms × 1.1^200 ≈ 9.5 minutes: every realistic request fits. */
const BUCKETS = 200;

export class LatencyHistogram {
  private readonly counts = new Uint32Array(BUCKETS + 1);
  private total = 0;

  add(ms: number): void {
    const i = ms <= MIN_MS ? 0 : Math.min(BUCKETS, 1 + Math.floor(Math.log(ms / MIN_MS) / LOG_GROWTH));
    this.counts[i] = (this.counts[i] as number) + 1;
    this.total++;
  }

  get count(): number {
    return this.total;
  }

  /** The q-quantile (0…1) in ms, from the middle of its bucket; null when empty. */
  quantile(q: number): number | null {
    if (this.total === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i <= BUCKETS; i++) {
      seen += this.counts[i] as number;
      if (seen >= rank) {
        if (i === 0) return MIN_MS;
        const low = MIN_MS * GROWTH ** (i - 1);
        return (low + low * GROWTH) / 2;
      }
    }
    return null;
  }
}
