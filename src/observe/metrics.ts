/**
 * Prometheus metrics. Counters and histograms live in shared memory (MetricCells
 * rows in SharedState) so every data-path thread adds to the same numbers; the
 * data path only increments, and /metrics on the admin listener reads and formats.
 * What exists, and where each one's cells are, is declared in metric-table.ts.
 * Labels are bounded: service, server, status class — never paths or client IPs.
 */
import type { ServerCells } from '../state/server-cells.ts';
import type { SharedState } from '../state/shared-state.ts';
import type { RequestRecord } from './events.ts';
import { bucketIndex, cellsOf, type GaugeRow, METRICS, type MetricCells, type MetricDeclaration, type MetricName, scopeOf } from './metric-table.ts';

/** Adds to a counter of the process, or of the row (service or server slot) it belongs to; `value` picks the extra label's value. */
export function count(state: SharedState, name: MetricName, options: { row?: number; value?: string; by?: number } = {}): void {
  add(state, cellsOf(name), options.row ?? 0, options.by ?? 1, options.value);
}

function rowsOf(state: SharedState, scope: MetricCells['scope']) {
  return scope === 'server' ? state.serverMetrics : scope === 'service' ? state.serviceMetrics : state.globalMetrics;
}

function add(state: SharedState, cells: MetricCells, row: number, by: number, value?: string): void {
  const index = value === undefined ? 0 : (cells.metric.values?.indexOf(value) ?? -1);
  if (index < 0) return;
  rowsOf(state, cells.scope).add(row, cells.offset + index * cells.stride, BigInt(Math.round(cells.metric.seconds ? by * 1e6 : by)));
}

/** Counts one observation into a histogram: its bucket, and its sum in microseconds. */
function observe(state: SharedState, cells: MetricCells, row: number, seconds: number): void {
  const buckets = cells.metric.buckets ?? [];
  const rows = rowsOf(state, cells.scope);
  rows.add(row, cells.offset + bucketIndex(buckets, seconds), 1n);
  rows.add(row, cells.offset + buckets.length + 1, BigInt(Math.round(seconds * 1e6)));
}

const REQUEST_DURATION = cellsOf('velocity_request_duration_seconds');
const UPSTREAM_DURATION = cellsOf('velocity_upstream_duration_seconds');
const RETRIES = cellsOf('velocity_retries_total');
const RETRIES_DENIED = cellsOf('velocity_retries_denied_total');
const RATE_LIMITED = cellsOf('velocity_rate_limited_total');
const DENIED = cellsOf('velocity_denied_total');
const ERRORS = cellsOf('velocity_errors_total');
const QUEUED = cellsOf('velocity_queued_requests_total');
const QUEUE_WAIT = cellsOf('velocity_queue_wait_seconds_total');
const REQUESTS = cellsOf('velocity_requests_total');
const UNROUTED = cellsOf('velocity_unrouted_requests_total');
const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];

/** What the observer needs to know of a service: its slot and its servers' slots. */
export interface CountedService {
  readonly slot: number;
  readonly servers: readonly { readonly id: string; readonly slot: number }[];
}

/** The data-path side: one call per finished request, on the thread that served it. */
export function metricsObserver(state: SharedState, serviceOf: (name: string) => CountedService | undefined): (record: RequestRecord) => void {
  return (record) => {
    if (!record.service) {
      if (record.errorCode === 'NO_ROUTE') add(state, UNROUTED, 0, 1);
      return;
    }
    const service = serviceOf(record.service);
    if (!service) return;
    const row = service.slot;
    observe(state, REQUEST_DURATION, row, record.totalMs / 1000);
    if (record.retries > 0) add(state, RETRIES, row, record.retries);
    if (record.retryDenied) add(state, RETRIES_DENIED, row, 1, record.retryDenied);
    if (record.errorCode === 'RATE_LIMITED') add(state, RATE_LIMITED, row, 1);
    if (record.errorCode === 'IP_DENIED') add(state, DENIED, row, 1);
    if (record.errorCode) add(state, ERRORS, row, 1);
    if (record.queueWaitMs > 0) {
      add(state, QUEUED, row, 1);
      add(state, QUEUE_WAIT, row, record.queueWaitMs / 1000);
    }
    const server = record.server ? service.servers.find((s) => s.id === record.server) : undefined;
    if (!server) return;
    add(state, REQUESTS, server.slot, 1, CLASSES[Math.floor(record.status / 100) - 1]);
    if (record.upstreamMs !== undefined) observe(state, UPSTREAM_DURATION, server.slot, record.upstreamMs / 1000);
  };
}

/** What the exposition reads: the services and servers that exist now (the control plane). */
export interface MetricsSource {
  readonly state: SharedState;
  serviceNames(): string[];
  serviceSlot(name: string): number;
  servers(service: string): readonly { readonly spec: { readonly id: string; readonly slot: number } }[];
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const labels = (pairs: Record<string, string>) =>
  Object.keys(pairs).length === 0
    ? ''
    : `{${Object.entries(pairs)
        .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
        .join(',')}}`;

interface Row {
  slot: number;
  labels: Record<string, string>;
  live: GaugeRow;
}

/** A histogram's lines: cumulative buckets from the per-bucket counts (`countAt(buckets.length)` is +Inf), sum and count. */
function histogramLines(metric: MetricDeclaration, pairs: Record<string, string>, countAt: (bucket: number) => bigint, sumSeconds: number): string[] {
  const buckets = metric.buckets ?? [];
  const lines: string[] = [];
  let cumulative = 0n;
  for (let b = 0; b <= buckets.length; b++) {
    cumulative += countAt(b);
    lines.push(`${metric.name}_bucket${labels({ ...pairs, le: b < buckets.length ? String(buckets[b]) : '+Inf' })} ${cumulative}`);
  }
  lines.push(`${metric.name}_sum${labels(pairs)} ${sumSeconds}`);
  lines.push(`${metric.name}_count${labels(pairs)} ${cumulative}`);
  return lines;
}

/** The lines of one metric for one row. */
function sampleLines(state: SharedState, metric: MetricDeclaration, row: Row): string[] {
  const extra = metric.labels.find((l) => l !== 'service' && l !== 'server');
  const values: (string | undefined)[] = metric.values ? [...metric.values] : [undefined];
  const lines: string[] = [];
  for (const [i, value] of values.entries()) {
    const pairs = extra && value !== undefined ? { ...row.labels, [extra]: value } : row.labels;
    if (metric.read) {
      lines.push(`${metric.name}${labels(pairs)} ${metric.read(row.live, value)}`);
      continue;
    }
    const cells = cellsOf(metric.name as MetricName);
    const rows = rowsOf(state, cells.scope);
    const base = cells.offset + i * cells.stride;
    if (metric.type === 'histogram') {
      const buckets = metric.buckets ?? [];
      lines.push(...histogramLines(metric, pairs, (b) => rows.load(row.slot, base + b), Number(rows.load(row.slot, base + buckets.length + 1)) / 1e6));
    } else {
      const raw = rows.load(row.slot, base);
      lines.push(`${metric.name}${labels(pairs)} ${metric.seconds ? Number(raw) / 1e6 : raw}`);
    }
  }
  return lines;
}

/** One sample of a collected metric: a counter's or gauge's value, or a histogram's per-bucket counts (the last is +Inf) and sum in seconds. */
export type CollectedSample =
  | { readonly labels: Record<string, string>; readonly value: number | bigint }
  | { readonly labels: Record<string, string>; readonly buckets: readonly bigint[]; readonly sum: number };

/** Hands over the samples of one `collected` metric of the table when /metrics is scraped. */
export type Collector = () => Iterable<CollectedSample>;
export type Collectors = Partial<Record<MetricName, Collector>>;

function collectedLines(metric: MetricDeclaration, collector: Collector | undefined): string[] {
  const lines: string[] = [];
  for (const sample of collector?.() ?? []) {
    if ('value' in sample) lines.push(`${metric.name}${labels(sample.labels)} ${sample.value.toString()}`);
    else lines.push(...histogramLines(metric, sample.labels, (b) => sample.buckets[b] ?? 0n, sample.sum));
  }
  return lines;
}

/** The Prometheus text exposition of everything in the metric table; `collectors` hand over the samples of its collected metrics. */
export function renderMetrics(source: MetricsSource, queueLength: (service: string) => number, collectors: Collectors = {}): string {
  const { state } = source;
  const now = Date.now();
  const rows: Record<MetricCells['scope'], Row[]> = { global: [{ slot: 0, labels: {}, live: { now } }], service: [], server: [] };
  for (const service of source.serviceNames()) {
    rows.service.push({ slot: source.serviceSlot(service), labels: { service }, live: { now, queueLength: queueLength(service) } });
    for (const entry of source.servers(service)) {
      const server: ServerCells = state.server(entry.spec.slot);
      rows.server.push({ slot: entry.spec.slot, labels: { service, server: entry.spec.id }, live: { now, server } });
    }
  }
  const out: string[] = [];
  for (const metric of METRICS as readonly MetricDeclaration[]) {
    const lines = metric.collected ? collectedLines(metric, collectors[metric.name as MetricName]) : rows[scopeOf(metric)].flatMap((row) => sampleLines(state, metric, row));
    // A collector with nothing to tell (no gRPC calls, no ACME block) leaves its metric out.
    if (metric.collected && lines.length === 0) continue;
    out.push(`# HELP ${metric.name} ${metric.help}`, `# TYPE ${metric.name} ${metric.type}`, ...lines);
  }
  return `${out.join('\n')}\n`;
}
