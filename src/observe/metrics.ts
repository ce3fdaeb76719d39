/**
 * Prometheus metrics. Counters and histograms live in shared memory (BigInt64
 * cells in SharedState) so every data-path thread adds to the same numbers; the
 * data path only increments, and /metrics on the admin listener reads and formats.
 * Labels are bounded: service, server, status class — never paths or client IPs.
 */
import type { ControlPlane } from '../runtime/control-plane.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import type { MetricCells } from '../state/metric-cells.ts';
import type { SharedState } from '../state/shared-state.ts';
import { CIRCUIT_STATES } from '../upstream/server.ts';
import type { RequestRecord } from './events.ts';

/** Histogram bucket upper bounds, seconds. */
export const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const HIST_CELLS = BUCKETS.length + 1;
const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** Cell offsets inside a server slot. */
const SV = { CLASS: 0, HIST: 5, SUM: 5 + HIST_CELLS, CHECK_OK: 6 + HIST_CELLS, CHECK_FAIL: 7 + HIST_CELLS } as const;
/** Cell offsets inside a service slot. */
const SE = {
  HIST: 0,
  SUM: HIST_CELLS,
  RETRIES: HIST_CELLS + 1,
  RATE_LIMITED: HIST_CELLS + 2,
  DENIED: HIST_CELLS + 3,
  QUEUE_WAIT_SUM: HIST_CELLS + 4,
  QUEUED: HIST_CELLS + 5,
  ERRORS: HIST_CELLS + 6,
  RETRIES_DENIED_BY_BUDGET: HIST_CELLS + 7,
} as const;
/** Process-wide cells. */
export const GM = {
  LOG_DROPPED: 0,
  RELOAD_OK: 1,
  RELOAD_FAILED: 2,
  UNROUTED: 3,
  LOG_WRITTEN: 4,
  HEALTH_DOWN: 5,
  HEALTH_UP: 6,
  EJECTIONS: 7,
  LOG_STORE_ERRORS: 8,
  REDIS_OUTAGES: 9,
  SERVERS_REMOVED: 10,
  SPANS_EXPORTED: 11,
  SPANS_DROPPED: 12,
  FALLBACK_ALLOWED: 13,
} as const;

/** Cells each scope needs (SharedState sizes its rows by this). */
export const METRIC_CELLS = { server: SV.CHECK_FAIL + 1, service: SE.RETRIES_DENIED_BY_BUDGET + 1, global: GM.FALLBACK_ALLOWED + 1 };

export function bucketOf(seconds: number): number {
  for (let i = 0; i < BUCKETS.length; i++) if (seconds <= (BUCKETS[i] as number)) return i;
  return BUCKETS.length;
}

/** The data-path side: one call per finished request, on the thread that served it. */
export function metricsObserver(plane: DataPlane): (record: RequestRecord) => void {
  const { serverMetrics, serviceMetrics, globalMetrics } = plane.state;
  return (record) => {
    if (!record.service) {
      if (record.errorCode === 'NO_ROUTE') globalMetrics.add(0, GM.UNROUTED, 1n);
      return;
    }
    const service = plane.service(record.service);
    if (!service) return;
    const base = service.slot;
    const seconds = record.totalMs / 1000;
    serviceMetrics.add(base, SE.HIST + bucketOf(seconds), 1n);
    serviceMetrics.add(base, SE.SUM, BigInt(Math.round(record.totalMs * 1000)));
    if (record.retries > 0) serviceMetrics.add(base, SE.RETRIES, BigInt(record.retries));
    if (record.errorCode === 'RATE_LIMITED') serviceMetrics.add(base, SE.RATE_LIMITED, 1n);
    if (record.errorCode === 'IP_DENIED') serviceMetrics.add(base, SE.DENIED, 1n);
    if (record.errorCode) serviceMetrics.add(base, SE.ERRORS, 1n);
    if (record.retryDenied === 'budget') serviceMetrics.add(base, SE.RETRIES_DENIED_BY_BUDGET, 1n);
    if (record.queueWaitMs > 0) {
      serviceMetrics.add(base, SE.QUEUED, 1n);
      serviceMetrics.add(base, SE.QUEUE_WAIT_SUM, BigInt(Math.round(record.queueWaitMs * 1000)));
    }
    const server = record.server ? service.servers.find((s) => s.id === record.server) : undefined;
    if (!server) return;
    const sbase = server.slot;
    const cls = Math.floor(record.status / 100) - 1;
    if (cls >= 0 && cls < 5) serverMetrics.add(sbase, SV.CLASS + cls, 1n);
    if (record.upstreamMs !== undefined) {
      serverMetrics.add(sbase, SV.HIST + bucketOf(record.upstreamMs / 1000), 1n);
      serverMetrics.add(sbase, SV.SUM, BigInt(Math.round(record.upstreamMs * 1000)));
    }
  };
}

/** Counts an active health-check result (main thread). */
export function countHealthCheck(state: SharedState, slot: number, ok: boolean): void {
  state.serverMetrics.add(slot, ok ? SV.CHECK_OK : SV.CHECK_FAIL, 1n);
}

export function countGlobal(state: SharedState, cell: number, by = 1): void {
  state.globalMetrics.add(0, cell, BigInt(by));
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const labels = (pairs: Record<string, string>) =>
  `{${Object.entries(pairs)
    .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
    .join(',')}}`;

/** Collects samples per family: the text format wants each family's lines in one group. */
export class Exposition {
  private readonly families = new Map<string, string[]>();
  private current: string[] = [];

  declare(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): void {
    let lines = this.families.get(name);
    if (!lines) {
      lines = [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
      this.families.set(name, lines);
    }
    this.current = lines;
  }

  sample(name: string, pairs: Record<string, string>, value: number | bigint): void {
    this.current.push(`${name}${Object.keys(pairs).length ? labels(pairs) : ''} ${value.toString()}`);
  }

  histogram(name: string, pairs: Record<string, string>, cells: MetricCells, row: number, start: number, sumMicros: bigint): void {
    let cumulative = 0n;
    for (let i = 0; i < HIST_CELLS; i++) {
      cumulative += cells.load(row, start + i);
      this.sample(`${name}_bucket`, { ...pairs, le: i < BUCKETS.length ? String(BUCKETS[i]) : '+Inf' }, cumulative);
    }
    this.sample(`${name}_sum`, pairs, Number(sumMicros) / 1e6);
    this.sample(`${name}_count`, pairs, cumulative);
  }

  text(): string {
    return `${[...this.families.values()].flat().join('\n')}\n`;
  }
}

/** A feature's own metrics, written after the built-in ones (e.g. ACME certificates). */
export type MetricSource = (out: Pick<Exposition, 'declare' | 'sample'>) => void;

/** The Prometheus text exposition of everything Velocity counts. */
export function renderMetrics(control: ControlPlane, queueLength: (service: string) => number, sources: readonly MetricSource[] = []): string {
  const { state } = control;
  const out = new Exposition();
  const now = Date.now();
  for (const service of control.serviceNames()) {
    const vslot = control.serviceSlot(service);
    const cell = (i: number) => state.serviceMetrics.load(vslot, i);
    out.declare('velocity_request_duration_seconds', 'histogram', 'Time from request arrival to the end of the response, by service.');
    out.histogram('velocity_request_duration_seconds', { service }, state.serviceMetrics, vslot, SE.HIST, cell(SE.SUM));
    out.declare('velocity_retries_total', 'counter', 'Retries sent to another server.');
    out.sample('velocity_retries_total', { service }, cell(SE.RETRIES));
    out.declare('velocity_retries_denied_total', 'counter', 'Failed tries not retried because the retry budget was spent.');
    out.sample('velocity_retries_denied_total', { service, reason: 'budget' }, cell(SE.RETRIES_DENIED_BY_BUDGET));
    out.declare('velocity_rate_limited_total', 'counter', 'Requests answered 429 by a rate limit.');
    out.sample('velocity_rate_limited_total', { service }, cell(SE.RATE_LIMITED));
    out.declare('velocity_denied_total', 'counter', 'Requests answered 403 by an IP filter or ban.');
    out.sample('velocity_denied_total', { service }, cell(SE.DENIED));
    out.declare('velocity_errors_total', 'counter', 'Responses Velocity made itself (x-velocity-error).');
    out.sample('velocity_errors_total', { service }, cell(SE.ERRORS));
    out.declare('velocity_queue_length', 'gauge', 'Requests waiting for a free server.');
    out.sample('velocity_queue_length', { service }, queueLength(service));
    out.declare('velocity_queued_requests_total', 'counter', 'Requests that waited in the queue.');
    out.sample('velocity_queued_requests_total', { service }, cell(SE.QUEUED));
    out.declare('velocity_queue_wait_seconds_total', 'counter', 'Total time requests spent in the queue.');
    out.sample('velocity_queue_wait_seconds_total', { service }, Number(cell(SE.QUEUE_WAIT_SUM)) / 1e6);
    for (const entry of control.servers(service)) {
      const slot = entry.spec.slot;
      const server = entry.spec.id;
      const live = state.server(slot);
      const cell = (i: number) => state.serverMetrics.load(slot, i);
      out.declare('velocity_requests_total', 'counter', 'Responses passed on from servers, by status class.');
      for (const [i, code] of CLASSES.entries()) out.sample('velocity_requests_total', { service, server, code }, cell(SV.CLASS + i));
      out.declare('velocity_upstream_duration_seconds', 'histogram', 'Time spent with servers per request, all tries.');
      out.histogram('velocity_upstream_duration_seconds', { service, server }, state.serverMetrics, slot, SV.HIST, cell(SV.SUM));
      out.declare('velocity_in_flight_requests', 'gauge', 'Requests in flight on a server, all threads.');
      out.sample('velocity_in_flight_requests', { service, server }, live.inFlight);
      const ejected = now < live.ejectedUntil;
      out.declare('velocity_server_up', 'gauge', '1 when active health checks pass and passive health has not ejected the server.');
      out.sample('velocity_server_up', { service, server }, live.activeUp && !ejected ? 1 : 0);
      out.declare('velocity_circuit_state', 'gauge', '1 for the circuit breaker state the server is in.');
      for (const [i, name] of CIRCUIT_STATES.entries()) out.sample('velocity_circuit_state', { service, server, state: name }, live.circuitState === i ? 1 : 0);
      out.declare('velocity_health_checks_total', 'counter', 'Active health-check results.');
      out.sample('velocity_health_checks_total', { service, server, result: 'pass' }, cell(SV.CHECK_OK));
      out.sample('velocity_health_checks_total', { service, server, result: 'fail' }, cell(SV.CHECK_FAIL));
    }
  }
  const g = (i: number) => state.globalMetrics.load(0, i);
  out.declare('velocity_unrouted_requests_total', 'counter', 'Requests no service matched (404).');
  out.sample('velocity_unrouted_requests_total', {}, g(GM.UNROUTED));
  out.declare('velocity_log_entries_dropped_total', 'counter', 'Access-log entries dropped because the log store was slow or down.');
  out.sample('velocity_log_entries_dropped_total', {}, g(GM.LOG_DROPPED));
  out.declare('velocity_log_entries_written_total', 'counter', 'Access-log entries written to the log store.');
  out.sample('velocity_log_entries_written_total', {}, g(GM.LOG_WRITTEN));
  out.declare('velocity_log_store_errors_total', 'counter', 'Failed writes to the log store (entries stay buffered and are retried).');
  out.sample('velocity_log_store_errors_total', {}, g(GM.LOG_STORE_ERRORS));
  out.declare('velocity_health_changes_total', 'counter', 'Servers going down or up by active health checks.');
  out.sample('velocity_health_changes_total', { to: 'down' }, g(GM.HEALTH_DOWN));
  out.sample('velocity_health_changes_total', { to: 'up' }, g(GM.HEALTH_UP));
  out.declare('velocity_passive_ejections_total', 'counter', 'Servers ejected by passive health.');
  out.sample('velocity_passive_ejections_total', {}, g(GM.EJECTIONS));
  out.declare(
    'velocity_state_store_outages_total',
    'counter',
    'Times the Redis state store became unreachable, per connection (one per data-path thread); rate limits and the blocklist fell back to this instance.',
  );
  out.sample('velocity_state_store_outages_total', {}, g(GM.REDIS_OUTAGES));
  out.declare(
    'velocity_state_store_fallback_allowed_total',
    'counter',
    "Requests a shared rate limit let through on this instance's own count while Redis was unreachable: the most a Redis outage or failover added to the shared limits.",
  );
  out.sample('velocity_state_store_fallback_allowed_total', {}, g(GM.FALLBACK_ALLOWED));
  out.declare('velocity_servers_removed_total', 'counter', 'Servers removed at runtime or by a reload, after draining.');
  out.sample('velocity_servers_removed_total', {}, g(GM.SERVERS_REMOVED));
  out.declare('velocity_trace_spans_exported_total', 'counter', 'Spans sent to the OTLP collector.');
  out.sample('velocity_trace_spans_exported_total', {}, g(GM.SPANS_EXPORTED));
  out.declare('velocity_trace_spans_dropped_total', 'counter', 'Spans dropped: export queue full or the collector failed.');
  out.sample('velocity_trace_spans_dropped_total', {}, g(GM.SPANS_DROPPED));
  out.declare('velocity_config_reloads_total', 'counter', 'Config reloads by result.');
  out.sample('velocity_config_reloads_total', { result: 'success' }, g(GM.RELOAD_OK));
  out.sample('velocity_config_reloads_total', { result: 'failure' }, g(GM.RELOAD_FAILED));
  for (const source of sources) source(out);
  return out.text();
}
