/**
 * One dashboard snapshot: the last interval's numbers from the aggregator, plus
 * the live server state the admin API already shows (health, circuit, weights,
 * in-flight), the blocklist and the reload status. Read-only: it looks at shared
 * state and the control plane, never at the request path.
 */

import type { ReloadResult } from '../../config/reload-result.ts';
import type { Blocklist } from '../../guard/blocklist.ts';
import { describeServer, type ServicesApiDeps } from '../api/services.ts';
import type { IntervalStats, LiveAggregator } from './aggregator.ts';

export interface SnapshotDeps {
  services: ServicesApiDeps;
  blocklist: Blocklist;
  lastReload(): ReloadResult | undefined;
}

/** Blocklist entries sent per snapshot; the count is always exact. */
const MAX_BLOCK_ENTRIES = 100;
const round = (n: number | null, digits = 2) => (n === null ? null : Math.round(n * 10 ** digits) / 10 ** digits);

/** `agg` is absent while nobody watches: no recent errors are known then. */
export function buildSnapshot(deps: SnapshotDeps, stats: IntervalStats, agg: LiveAggregator | undefined) {
  const perSecond = 1000 / stats.ms;
  const { control, plane } = deps.services;
  const services = control.serviceNames().map((name) => {
    const s = stats.services.get(name);
    const runtime = plane.service(name);
    const routed = s ? [...s.servers.values()].reduce((a, b) => a + b, 0) : 0;
    const fromFile = deps.services.fileServers(name);
    const servers = control.servers(name).map((entry) => {
      const d = describeServer(deps.services, name, entry, fromFile);
      const requests = s?.servers.get(d.id) ?? 0;
      const last = agg?.lastError(name, d.id);
      return {
        id: d.id,
        url: d.url,
        source: d.source,
        state: d.state,
        available: d.available,
        health: { active: d.health.active, passive: d.health.passive },
        circuit: d.circuit,
        weight: d.weight,
        effective_weight: d.effective_weight,
        in_flight: d.in_flight,
        rps: round(requests * perSecond),
        share: routed > 0 ? round(requests / routed, 4) : 0,
        errors_recent: agg?.recentErrors(name, d.id) ?? 0,
        last_error: last ? { at: new Date(last.at).toISOString(), status: last.status, code: last.code } : null,
        latency_ms: d.latency_ms,
      };
    });
    return {
      name,
      policy: runtime?.config.policy.name ?? null,
      queue_length: runtime ? plane.queueFor(runtime).length : 0,
      rps: round((s?.requests ?? 0) * perSecond),
      error_rate: s && s.requests > 0 ? round(s.errors5xx / s.requests, 4) : 0,
      p50_ms: round(s?.p50 ?? null),
      p95_ms: round(s?.p95 ?? null),
      p99_ms: round(s?.p99 ?? null),
      rate_limited: s?.rateLimited ?? 0,
      denied: s?.denied ?? 0,
      servers,
    };
  });
  const entries = deps.blocklist.list();
  const reload = deps.lastReload();
  return {
    at: new Date(stats.at).toISOString(),
    interval_ms: stats.ms,
    services,
    unrouted: stats.unrouted,
    rate_limited: stats.rateLimited + services.reduce((a, s) => a + s.rate_limited, 0),
    denied: stats.denied + services.reduce((a, s) => a + s.denied, 0),
    blocklist: {
      count: entries.length,
      entries: entries.slice(0, MAX_BLOCK_ENTRIES).map((e) => ({
        cidr: e.cidr,
        reason: e.reason,
        source: e.source,
        expires_at: e.expiresAt === null ? null : new Date(e.expiresAt).toISOString(),
      })),
    },
    reload: { version: control.current.version, last: reload ?? null },
  };
}

export type Snapshot = ReturnType<typeof buildSnapshot>;
