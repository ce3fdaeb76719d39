/**
 * Every metric Velocity exposes, declared once: name, type, help, labels and
 * buckets. The shared-memory layout (which cell of a server's, a service's or the
 * process's row holds what), the row sizes SharedState allocates, and the
 * Prometheus exposition all follow from this table: adding a metric is one entry
 * here and one call where it is counted.
 *
 * Labels `service` and `server` say whose row a metric lives in; any other label
 * lists its values (`values`), one cell each. Gauges hold no cells: `read` takes
 * them from live state when /metrics is scraped. `collected` metrics hold no cells
 * either: their label values are open-ended (gRPC methods, certificate names), so a
 * collector on the main thread keeps them, bounded, and hands its samples over when
 * scraped; their name, type, help, labels and buckets are still declared here.
 */
import type { ServerCells } from '../state/server-cells.ts';
import type { MetricCellCounts } from '../state/shared-state.ts';

/** Histogram bucket upper bounds, seconds. */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** What a gauge may read: the row's live state when scraped. */
export interface GaugeRow {
  readonly now: number;
  /** For server gauges. */
  readonly server?: ServerCells;
  /** For service gauges. */
  readonly queueLength?: number;
}

export interface MetricDeclaration {
  readonly name: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly help: string;
  readonly labels: readonly string[];
  /** The values of the one label that is neither service nor server. */
  readonly values?: readonly string[];
  readonly buckets?: readonly number[];
  /** Counted in microseconds, shown in seconds. */
  readonly seconds?: boolean;
  /** Gauges: the value now (for `value` of the extra label, when there is one). */
  readonly read?: (row: GaugeRow, value: string | undefined) => number;
  /** Samples come from a collector (see the top of this file), not from cells. */
  readonly collected?: true;
}

const CIRCUITS = ['closed', 'open', 'half-open'];

export const METRICS = [
  // ---- per service ----
  {
    name: 'velocity_request_duration_seconds',
    type: 'histogram',
    help: 'Time from request arrival to the end of the response, by service.',
    labels: ['service'],
    buckets: DURATION_BUCKETS,
  },
  { name: 'velocity_retries_total', type: 'counter', help: 'Retries sent to another server.', labels: ['service'] },
  {
    name: 'velocity_retries_denied_total',
    type: 'counter',
    help: 'Failed tries not retried because the retry budget was spent.',
    labels: ['service', 'reason'],
    values: ['budget'],
  },
  { name: 'velocity_rate_limited_total', type: 'counter', help: 'Requests answered 429 by a rate limit.', labels: ['service'] },
  { name: 'velocity_denied_total', type: 'counter', help: 'Requests answered 403 by an IP filter or ban.', labels: ['service'] },
  { name: 'velocity_errors_total', type: 'counter', help: 'Responses Velocity made itself (x-velocity-error).', labels: ['service'] },
  { name: 'velocity_queue_length', type: 'gauge', help: 'Requests waiting for a free server.', labels: ['service'], read: (row) => row.queueLength ?? 0 },
  { name: 'velocity_queued_requests_total', type: 'counter', help: 'Requests that waited in the queue.', labels: ['service'] },
  { name: 'velocity_queue_wait_seconds_total', type: 'counter', help: 'Total time requests spent in the queue.', labels: ['service'], seconds: true },
  // ---- per server ----
  {
    name: 'velocity_requests_total',
    type: 'counter',
    help: 'Responses passed on from servers, by status class.',
    labels: ['service', 'server', 'code'],
    values: ['1xx', '2xx', '3xx', '4xx', '5xx'],
  },
  {
    name: 'velocity_upstream_duration_seconds',
    type: 'histogram',
    help: 'Time spent with servers per request, all tries.',
    labels: ['service', 'server'],
    buckets: DURATION_BUCKETS,
  },
  {
    name: 'velocity_in_flight_requests',
    type: 'gauge',
    help: 'Requests in flight on a server, all threads.',
    labels: ['service', 'server'],
    read: (row) => row.server?.inFlight ?? 0,
  },
  {
    name: 'velocity_server_up',
    type: 'gauge',
    help: '1 when active health checks pass and passive health has not ejected the server.',
    labels: ['service', 'server'],
    read: (row) => (row.server?.activeUp && row.now >= row.server.ejectedUntil ? 1 : 0),
  },
  {
    name: 'velocity_circuit_state',
    type: 'gauge',
    help: '1 for the circuit breaker state the server is in.',
    labels: ['service', 'server', 'state'],
    values: CIRCUITS,
    read: (row, value) => (CIRCUITS[row.server?.circuitState ?? 0] === value ? 1 : 0),
  },
  { name: 'velocity_health_checks_total', type: 'counter', help: 'Active health-check results.', labels: ['service', 'server', 'result'], values: ['pass', 'fail'] },
  // ---- process-wide ----
  { name: 'velocity_unrouted_requests_total', type: 'counter', help: 'Requests no service matched (404).', labels: [] },
  { name: 'velocity_log_entries_dropped_total', type: 'counter', help: 'Access-log entries dropped because the log store was slow or down.', labels: [] },
  { name: 'velocity_log_entries_written_total', type: 'counter', help: 'Access-log entries written to the log store.', labels: [] },
  { name: 'velocity_log_store_errors_total', type: 'counter', help: 'Failed writes to the log store (entries stay buffered and are retried).', labels: [] },
  {
    name: 'velocity_access_log_lines_lost_total',
    type: 'counter',
    help: 'Access-log lines lost because writing them failed (disk full, closed pipe).',
    labels: [],
  },
  { name: 'velocity_health_changes_total', type: 'counter', help: 'Servers going down or up by active health checks.', labels: ['to'], values: ['down', 'up'] },
  { name: 'velocity_passive_ejections_total', type: 'counter', help: 'Servers ejected by passive health.', labels: [] },
  {
    name: 'velocity_state_store_outages_total',
    type: 'counter',
    help: 'Times the Redis state store became unreachable, per connection (one per data-path thread); rate limits and the blocklist fell back to this instance.',
    labels: [],
  },
  {
    name: 'velocity_state_store_fallback_allowed_total',
    type: 'counter',
    help: "Requests a shared rate limit let through on this instance's own count while Redis was unreachable: the most a Redis outage or failover added to the shared limits.",
    labels: [],
  },
  { name: 'velocity_servers_removed_total', type: 'counter', help: 'Servers removed at runtime or by a reload, after draining.', labels: [] },
  { name: 'velocity_config_reloads_total', type: 'counter', help: 'Config reloads by result.', labels: ['result'], values: ['success', 'failure'] },
  { name: 'velocity_trace_spans_exported_total', type: 'counter', help: 'Spans sent to the OTLP collector.', labels: [] },
  { name: 'velocity_trace_spans_dropped_total', type: 'counter', help: 'Spans dropped: export queue full or the collector failed.', labels: [] },
  // ---- collected on the main thread ----
  {
    name: 'velocity_grpc_calls_total',
    type: 'counter',
    help: 'gRPC calls by service, method and the status the client got.',
    labels: ['service', 'grpc_method', 'grpc_code'],
    collected: true,
  },
  {
    name: 'velocity_grpc_call_duration_seconds',
    type: 'histogram',
    help: 'gRPC call duration by service and method.',
    labels: ['service', 'grpc_method'],
    buckets: DURATION_BUCKETS,
    collected: true,
  },
  {
    name: 'velocity_acme_certificate_expiry_timestamp_seconds',
    type: 'gauge',
    help: 'When an ACME certificate expires (Unix seconds).',
    labels: ['name'],
    collected: true,
  },
  {
    name: 'velocity_acme_certificate_expiring',
    type: 'gauge',
    help: '1 when an ACME certificate is close to expiry and not renewed (the expiry warning).',
    labels: ['name'],
    collected: true,
  },
  { name: 'velocity_acme_orders_total', type: 'counter', help: 'ACME orders by result.', labels: ['result'], collected: true },
  {
    name: 'velocity_acme_errors_total',
    type: 'counter',
    help: 'Failed ACME attempts by kind (ca_unreachable, rate_limited, account, validation, ca_error, storage, lock).',
    labels: ['kind'],
    collected: true,
  },
  // ---- fleet mode (config_source.etcd) ----
  { name: 'velocity_fleet_etcd_up', type: 'gauge', help: '1 while this instance reaches etcd; 0 while it serves its last config without it.', labels: [], collected: true },
  { name: 'velocity_fleet_etcd_outages_total', type: 'counter', help: 'Times this instance lost etcd.', labels: [], collected: true },
  { name: 'velocity_fleet_config_revision', type: 'gauge', help: 'The etcd revision of the shared config this instance runs.', labels: [], collected: true },
] as const satisfies readonly MetricDeclaration[];

export type MetricName = (typeof METRICS)[number]['name'];
export type Scope = keyof MetricCellCounts;

/** The histogram bucket of `seconds`: the first bound it does not exceed, or +Inf (one past the last). */
export function bucketIndex(buckets: readonly number[], seconds: number): number {
  let at = 0;
  while (at < buckets.length && !(seconds <= (buckets[at] as number))) at++;
  return at;
}

/** Where a metric's cells are: its row's scope, its first cell, and how many cells one label value takes. */
export interface MetricCells {
  readonly metric: MetricDeclaration;
  readonly scope: Scope;
  readonly offset: number;
  readonly stride: number;
}

export function scopeOf(metric: MetricDeclaration): Scope {
  return metric.labels.includes('server') ? 'server' : metric.labels.includes('service') ? 'service' : 'global';
}

/** Histograms take a cell per bucket, one for +Inf and one for the sum. */
const strideOf = (metric: MetricDeclaration) => (metric.type === 'histogram' ? (metric.buckets?.length ?? 0) + 2 : 1);

function layout(): { cells: Map<string, MetricCells>; counts: MetricCellCounts } {
  const counts: MetricCellCounts = { server: 0, service: 0, global: 0 };
  const cells = new Map<string, MetricCells>();
  for (const metric of METRICS as readonly MetricDeclaration[]) {
    if (metric.type === 'gauge' || metric.collected) continue;
    const scope = scopeOf(metric);
    const stride = strideOf(metric);
    cells.set(metric.name, { metric, scope, offset: counts[scope], stride });
    counts[scope] += stride * (metric.values?.length ?? 1);
  }
  return { cells, counts };
}

const derived = layout();

/** The cells each row needs: SharedState allocates this. */
export const METRIC_CELLS: MetricCellCounts = derived.counts;

/** Where a counted metric lives (throws for a name not in the table, or a gauge: a programming error). */
export function cellsOf(name: MetricName): MetricCells {
  const found = derived.cells.get(name);
  if (!found) throw new Error(`metric ${name} holds no cells`);
  return found;
}
