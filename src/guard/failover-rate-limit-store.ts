/**
 * Redis first, this instance's table when Redis cannot answer. `on_failure: open`
 * counts locally meanwhile (each instance then allows the limit on its own);
 * `closed` refuses what the limits cover until Redis is back.
 */
import type { Limit, Verdict } from './gcra.ts';
import type { RateLimitStore } from './rate-limit-store.ts';
import type { RedisConnection } from './redis-connection.ts';

/** Thrown by a fail-closed store while its shared state is unreachable. */
export class LimiterUnavailableError extends Error {
  constructor() {
    super('shared rate-limit state is unreachable and on_failure is closed');
    this.name = 'LimiterUnavailableError';
  }
}

/** A store that answers over the network (always asynchronously). */
type SharedStore = { take(key: string, limit: Limit, now: number): Promise<Verdict> };

export class FailoverRateLimitStore implements RateLimitStore {
  private readonly shared: SharedStore;
  private readonly local: RateLimitStore;
  private readonly redis: RedisConnection;
  private readonly failClosed: boolean;
  private readonly onLocalAllow: () => void;

  /** `onLocalAllow`: a request was let through on the local count (for a metric: the most a failover can add to a shared limit). */
  constructor(shared: SharedStore, local: RateLimitStore, redis: RedisConnection, onFailure: 'open' | 'closed', onLocalAllow: () => void = () => undefined) {
    this.shared = shared;
    this.local = local;
    this.redis = redis;
    this.failClosed = onFailure === 'closed';
    this.onLocalAllow = onLocalAllow;
  }

  take(key: string, limit: Limit, now: number): Verdict | Promise<Verdict> {
    if (!this.redis.usable(now)) return this.fallback(key, limit, now);
    return this.shared.take(key, limit, now).then(
      (verdict) => {
        this.redis.recovered();
        return verdict;
      },
      (err: Error) => {
        this.redis.failed(err);
        return this.fallback(key, limit, now);
      },
    );
  }

  private fallback(key: string, limit: Limit, now: number): Verdict | Promise<Verdict> {
    if (this.failClosed) throw new LimiterUnavailableError();
    const verdict = this.local.take(key, limit, now);
    if (verdict instanceof Promise) return verdict.then((v) => this.counted(v));
    return this.counted(verdict);
  }

  private counted(verdict: Verdict): Verdict {
    if (verdict.allowed) this.onLocalAllow();
    return verdict;
  }
}
