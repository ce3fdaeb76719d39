/**
 * Prometheus metrics. Counters and histograms live in shared memory (MetricCells
 * rows in SharedState) so every data-path thread adds to the same numbers; the
 * data path only increments, and /metrics on the admin listener reads and formats.
 * What exists, and where each one's cells are, is declared in metric-table.ts.
 * Labels are bounded: service, server, status class — never paths or client IPs.
 */
import { isMainThread } from 'node:worker_threads';
import type { MetricCells as MetricCellRows } from '../state/metric-cells.ts';
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

/** The cell (in its row) of a metric's label value, or -1 for a value the metric does not have. */
function cellOf(cells: MetricCells, value: string | undefined): number {
  const index = value === undefined ? 0 : (cells.metric.values?.indexOf(value) ?? -1);
  return index < 0 ? -1 : cells.offset + index * cells.stride;
}

/** What a cell counts: seconds as whole microseconds, anything else as it is. */
const cellAmount = (cells: MetricCells, by: number) => Math.round(cells.metric.seconds ? by * 1e6 : by);

function add(state: SharedState, cells: MetricCells, row: number, by: number, value?: string): void {
  const cell = cellOf(cells, value);
  if (cell >= 0) rowsOf(state, cells.scope).add(row, cell, BigInt(cellAmount(cells, by)));
}

/** The BigInts of the small counts a turn adds to most cells, made once (a flush made one per cell). */
const SMALL_COUNTS: readonly bigint[] = Array.from({ length: 256 }, (_, i) => BigInt(i));

/**
 * One thread's additions to one scope's shared cells that are not in shared memory
 * yet. The data path adds plain numbers here, per request; they go to the shared
 * cells (Atomics, BigInt) at most once per event-loop turn (PendingCounts says when),
 * a handful of cells for the dozens of requests a turn finishes. Per request, the
 * Atomics and the BigInts each of them allocates cost more than the rest of the
 * observer. Every count added is an integer (sums are whole microseconds), so the
 * plain sums are exact (up to 2^53: years of microseconds between two scrapes).
 */
class PendingAdds {
  private values = new Float64Array(256);
  /** Indexes whose value went from 0 since the last flush (a repeat is harmless). */
  private readonly touched: number[] = [];
  private readonly rows: MetricCellRows;

  constructor(rows: MetricCellRows) {
    this.rows = rows;
  }

  add(row: number, cell: number, by: number): void {
    const at = row * this.rows.width + cell;
    if (at >= this.values.length) {
      const grown = new Float64Array(Math.max(at + 1, this.values.length * 2));
      grown.set(this.values);
      this.values = grown;
    }
    const was = this.values[at] as number;
    if (was === 0) this.touched.push(at);
    this.values[at] = was + by;
  }

  flush(): void {
    const { values, touched, rows } = this;
    for (let k = 0; k < touched.length; k++) {
      const at = touched[k] as number;
      const by = values[at] as number;
      if (by === 0) continue;
      values[at] = 0;
      // `at` is the cell's index in the shared rows too (the same width).
      rows.addAt(at, by < SMALL_COUNTS.length ? (SMALL_COUNTS[by] as bigint) : BigInt(by));
    }
    touched.length = 0;
  }
}

/**
 * A data-path thread's counts for one SharedState, per scope. A worker thread's reach
 * the shared cells at the end of the event-loop turn that made them: the main thread's
 * scrape reads them there. The main thread's own wait for that scrape (renderMetrics
 * flushes them before it reads) or for a row's clearing, whichever comes first: an
 * immediate and a flush per turn cost ~1 µs a request when a turn serves one request.
 */
class PendingCounts {
  private readonly global: PendingAdds;
  private readonly service: PendingAdds;
  private readonly server: PendingAdds;
  /** Whether counts were added since the last flush. */
  private owed = false;
  private readonly eachTurn: boolean;
  readonly flush = () => {
    this.owed = false;
    this.global.flush();
    this.service.flush();
    this.server.flush();
  };

  /** `eachTurn`: flushed at the end of every turn that counted (a thread whose counts another thread reads). */
  constructor(state: SharedState, eachTurn: boolean) {
    this.eachTurn = eachTurn;
    this.global = new PendingAdds(state.globalMetrics);
    this.service = new PendingAdds(state.serviceMetrics);
    this.server = new PendingAdds(state.serverMetrics);
    // A slot given to a new server or service is zeroed; what this thread counted for its old owner goes first.
    for (const rows of [state.globalMetrics, state.serviceMetrics, state.serverMetrics]) rows.beforeEachClear(this.flush);
  }

  private scope(scope: MetricCells['scope']): PendingAdds {
    return scope === 'server' ? this.server : scope === 'service' ? this.service : this.global;
  }

  add(cells: MetricCells, row: number, by: number, value?: string): void {
    const cell = cellOf(cells, value);
    if (cell < 0) return;
    this.addAt(cells, row, cell, by);
  }

  /** Adds to the cell of the metric's label value at `index` of its values (no search by name). */
  addValueAt(cells: MetricCells, row: number, index: number, by: number): void {
    this.addAt(cells, row, cells.offset + index * cells.stride, by);
  }

  private addAt(cells: MetricCells, row: number, cell: number, by: number): void {
    this.scope(cells.scope).add(row, cell, cellAmount(cells, by));
    this.schedule();
  }

  /** Counts one observation into a histogram: its bucket, and its sum in microseconds. */
  observe(cells: MetricCells, row: number, seconds: number): void {
    const buckets = cells.metric.buckets ?? [];
    const scope = this.scope(cells.scope);
    scope.add(row, cells.offset + bucketIndex(buckets, seconds), 1);
    scope.add(row, cells.offset + buckets.length + 1, Math.round(seconds * 1e6));
    this.schedule();
  }

  private schedule(): void {
    if (this.owed) return;
    this.owed = true;
    if (this.eachTurn) setImmediate(this.flush);
  }
}

/** This thread's pending counts per SharedState (module state is per thread): renderMetrics flushes them before it reads. */
const pendingOf = new WeakMap<SharedState, PendingCounts>();

function pendingCounts(state: SharedState): PendingCounts {
  let pending = pendingOf.get(state);
  if (!pending) {
    // The admin listener, whose scrape reads the cells, runs on the main thread.
    pending = new PendingCounts(state, !isMainThread);
    pendingOf.set(state, pending);
  }
  return pending;
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
/** velocity_requests_total counts by the values its table entry declares: the status classes in order, '1xx' first. */
const STATUS_CLASSES = REQUESTS.metric.values ?? [];
if (!STATUS_CLASSES.every((v, i) => v === `${i + 1}xx`)) throw new Error('metrics: velocity_requests_total must count by the status classes 1xx, 2xx, … in order');

/** What the observer needs to know of a service: its slot and its servers' slots. */
export interface CountedService {
  readonly slot: number;
  readonly servers: readonly { readonly id: string; readonly slot: number }[];
}

/**
 * The data-path side: one call per finished request, on the thread that served it.
 * Its counts reach shared memory at the end of the event-loop turn on a worker thread,
 * and when read or cleared on the main thread (see PendingCounts).
 */
export function metricsObserver(state: SharedState, serviceOf: (name: string) => CountedService | undefined): (record: RequestRecord) => void {
  const pending = pendingCounts(state);
  return (record) => {
    if (!record.service) {
      if (record.errorCode === 'NO_ROUTE') pending.add(UNROUTED, 0, 1);
      return;
    }
    const service = serviceOf(record.service);
    if (!service) return;
    const row = service.slot;
    pending.observe(REQUEST_DURATION, row, record.totalMs / 1000);
    if (record.retries > 0) pending.add(RETRIES, row, record.retries);
    if (record.retryDenied) pending.add(RETRIES_DENIED, row, 1, record.retryDenied);
    if (record.errorCode === 'RATE_LIMITED') pending.add(RATE_LIMITED, row, 1);
    if (record.errorCode === 'IP_DENIED') pending.add(DENIED, row, 1);
    if (record.errorCode) pending.add(ERRORS, row, 1);
    if (record.queueWaitMs > 0) {
      pending.add(QUEUED, row, 1);
      pending.add(QUEUE_WAIT, row, record.queueWaitMs / 1000);
    }
    const server = record.server ? findServer(service.servers, record.server) : undefined;
    if (!server) return;
    // The class's index among the metric's values, not its name searched for there; a status outside 100–599
    // (a server cannot send one) counts under the first, as when its undefined class was searched for.
    const statusClass = Math.floor(record.status / 100) - 1;
    pending.addValueAt(REQUESTS, server.slot, statusClass >= 0 && statusClass < STATUS_CLASSES.length ? statusClass : 0, 1);
    if (record.upstreamMs !== undefined) pending.observe(UPSTREAM_DURATION, server.slot, record.upstreamMs / 1000);
  };
}

/** Indexed, not for-of: the server list is frozen, and V8 neither inlines nor elides for-of's iterator over a frozen array (~200 bytes and ~50 ns a call with three servers, in a micro-benchmark). */
function findServer(servers: CountedService['servers'], id: string): CountedService['servers'][number] | undefined {
  for (let i = 0; i < servers.length; i++) {
    const s = servers[i] as CountedService['servers'][number];
    if (s.id === id) return s;
  }
  return undefined;
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
  pendingOf.get(state)?.flush();
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
