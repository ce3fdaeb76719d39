/**
 * The dashboard's rolling window, fed by finished-request records (the observer
 * events), never by the data path itself. Records accumulate in the current
 * interval; tick() closes it and returns its numbers. Per-server error counts
 * are kept for the last `historyTicks` intervals so "recent errors" means more
 * than the last second.
 */
import type { RequestRecord } from '../../observe/events.ts';
import { LatencyHistogram } from './latency.ts';

export interface ServiceInterval {
  requests: number;
  /** Responses with status 500 and above. */
  errors5xx: number;
  rateLimited: number;
  denied: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  /** Requests per server id in this interval. */
  servers: Map<string, number>;
}

export interface ServerError {
  at: number;
  status: number;
  code: string | null;
}

export interface IntervalStats {
  /** When the interval closed, and how long it was (ms). */
  at: number;
  ms: number;
  services: Map<string, ServiceInterval>;
  /** Requests no service matched, and those refused before routing (rate limit, IP filter). */
  unrouted: number;
  rateLimited: number;
  denied: number;
}

interface Open {
  requests: number;
  errors5xx: number;
  rateLimited: number;
  denied: number;
  latency: LatencyHistogram;
  servers: Map<string, number>;
}

/** An interval with nothing in it: the numbers of a snapshot taken while nobody watches. */
export function emptyInterval(now = Date.now()): IntervalStats {
  return { at: now, ms: 1, services: new Map(), unrouted: 0, rateLimited: 0, denied: 0 };
}

const serverKey = (service: string, server: string) => `${service}\n${server}`;

export class LiveAggregator {
  private open = new Map<string, Open>();
  private openSince: number;
  private global = { unrouted: 0, rateLimited: 0, denied: 0 };
  /** Per-server 5xx counts of the last closed intervals, newest last. */
  private readonly errorHistory: Map<string, number>[] = [];
  private currentErrors = new Map<string, number>();
  private readonly lastErrors = new Map<string, ServerError>();
  private readonly historyTicks: number;

  constructor(now = Date.now(), historyTicks = 60) {
    this.openSince = now;
    this.historyTicks = historyTicks;
  }

  add(record: RequestRecord): void {
    const limited = record.errorCode === 'RATE_LIMITED';
    const denied = record.errorCode === 'IP_DENIED';
    if (!record.service) {
      if (limited) this.global.rateLimited++;
      else if (denied) this.global.denied++;
      else this.global.unrouted++;
      return;
    }
    let s = this.open.get(record.service);
    if (!s) {
      s = { requests: 0, errors5xx: 0, rateLimited: 0, denied: 0, latency: new LatencyHistogram(), servers: new Map() };
      this.open.set(record.service, s);
    }
    s.requests++;
    s.latency.add(record.totalMs);
    if (limited) s.rateLimited++;
    if (denied) s.denied++;
    const failed = record.status >= 500;
    if (failed) s.errors5xx++;
    if (!record.server) return;
    s.servers.set(record.server, (s.servers.get(record.server) ?? 0) + 1);
    if (failed) {
      const key = serverKey(record.service, record.server);
      this.currentErrors.set(key, (this.currentErrors.get(key) ?? 0) + 1);
      this.lastErrors.set(key, { at: record.time, status: record.status, code: record.errorCode ?? null });
    }
  }

  /** Closes the current interval and starts the next. */
  tick(now = Date.now()): IntervalStats {
    const services = new Map<string, ServiceInterval>();
    for (const [name, s] of this.open) {
      services.set(name, {
        requests: s.requests,
        errors5xx: s.errors5xx,
        rateLimited: s.rateLimited,
        denied: s.denied,
        p50: s.latency.quantile(0.5),
        p95: s.latency.quantile(0.95),
        p99: s.latency.quantile(0.99),
        servers: s.servers,
      });
    }
    const stats: IntervalStats = { at: now, ms: Math.max(1, now - this.openSince), services, ...this.global };
    this.errorHistory.push(this.currentErrors);
    if (this.errorHistory.length > this.historyTicks) this.errorHistory.shift();
    this.open = new Map();
    this.currentErrors = new Map();
    this.global = { unrouted: 0, rateLimited: 0, denied: 0 };
    this.openSince = now;
    return stats;
  }

  /** A server's 5xx responses over the kept history (closed intervals only). */
  recentErrors(service: string, server: string): number {
    const key = serverKey(service, server);
    let sum = 0;
    for (const m of this.errorHistory) sum += m.get(key) ?? 0;
    return sum;
  }

  lastError(service: string, server: string): ServerError | undefined {
    return this.lastErrors.get(serverKey(service, server));
  }
}
