/**
 * Where access-log records are kept for querying. One narrow interface with an
 * in-memory, an SQLite (node:sqlite, no native addon) and a PostgreSQL version.
 * Filtering happens in SQL; statistics are computed here, in TypeScript, from the
 * matching rows, so both databases give exactly the same answers.
 */
import type { RequestRecord, RetryRefusal } from './events.ts';

export interface LogQuery {
  service?: string;
  server?: string;
  /** Inclusive status range. */
  status?: { min: number; max: number };
  since?: number;
  until?: number;
  /** Path prefix. */
  path?: string;
  client?: string;
  traceId?: string;
  limit: number;
  /** Rows with an id below this (pages go from newest to oldest). */
  cursor?: number;
}

export interface StoredRecord extends RequestRecord {
  id: number;
}

export interface LogStore {
  readonly kind: string;
  /** Creates or migrates the schema. */
  init(): Promise<void>;
  write(batch: readonly RequestRecord[]): Promise<void>;
  query(q: LogQuery): Promise<StoredRecord[]>;
  /** Rows for statistics: (time, service, server, status, totalMs) matching the filter, newest first, at most `cap`. */
  statRows(q: Omit<LogQuery, 'limit' | 'cursor'>, cap: number): Promise<StatRow[]>;
  prune(olderThan: number, maxRows: number): Promise<void>;
  close(): Promise<void>;
}

export interface StatRow {
  time: number;
  service: string | null;
  server: string | null;
  status: number;
  totalMs: number;
}

/** Column order shared by the SQL stores. */
export const COLUMNS = [
  'time',
  'request_id',
  'client_ip',
  'method',
  'host',
  'path',
  'protocol',
  'status',
  'bytes_in',
  'bytes_out',
  'service',
  'server',
  'upstream_first_byte_ms',
  'upstream_ms',
  'total_ms',
  'retries',
  'queue_wait_ms',
  'decision',
  'error_code',
  'user_agent',
  'trace_id',
  'span_id',
  'retry_denied',
] as const;

export function recordToRow(r: RequestRecord): (string | number | null)[] {
  return [
    r.time,
    r.requestId,
    r.clientIp,
    r.method,
    r.host,
    r.path,
    r.protocol,
    r.status,
    r.bytesIn,
    r.bytesOut,
    r.service ?? null,
    r.server ?? null,
    r.upstreamFirstByteMs ?? null,
    r.upstreamMs ?? null,
    r.totalMs,
    r.retries,
    r.queueWaitMs,
    r.decision ?? null,
    r.errorCode ?? null,
    r.userAgent ?? null,
    r.traceId ?? null,
    r.spanId ?? null,
    r.retryDenied ?? null,
  ];
}

export function rowToRecord(row: Record<string, unknown>): StoredRecord {
  const num = (v: unknown) => (v === null || v === undefined ? undefined : Number(v));
  const str = (v: unknown) => (v === null || v === undefined ? undefined : String(v));
  return {
    id: Number(row.id),
    time: Number(row.time),
    requestId: String(row.request_id),
    clientIp: String(row.client_ip),
    method: String(row.method),
    host: String(row.host),
    path: String(row.path),
    protocol: String(row.protocol),
    status: Number(row.status),
    bytesIn: Number(row.bytes_in),
    bytesOut: Number(row.bytes_out),
    service: str(row.service),
    server: str(row.server),
    upstreamFirstByteMs: num(row.upstream_first_byte_ms),
    upstreamMs: num(row.upstream_ms),
    totalMs: Number(row.total_ms),
    retries: Number(row.retries),
    queueWaitMs: Number(row.queue_wait_ms),
    decision: str(row.decision),
    errorCode: str(row.error_code),
    userAgent: str(row.user_agent),
    traceId: str(row.trace_id),
    spanId: str(row.span_id),
    retryDenied: str(row.retry_denied) as RetryRefusal | undefined,
  };
}

/** A WHERE clause and its parameters, with placeholders in the store's style. */
export function whereClause(q: Omit<LogQuery, 'limit'>, placeholder: (n: number) => string): { sql: string; params: (string | number)[] } {
  const parts: string[] = [];
  const params: (string | number)[] = [];
  const add = (sql: string, value: string | number) => {
    params.push(value);
    parts.push(sql.replace('?', placeholder(params.length)));
  };
  if (q.service !== undefined) add('service = ?', q.service);
  if (q.server !== undefined) add('server = ?', q.server);
  if (q.status) {
    add('status >= ?', q.status.min);
    add('status <= ?', q.status.max);
  }
  if (q.since !== undefined) add('time >= ?', q.since);
  if (q.until !== undefined) add('time < ?', q.until);
  // A prefix compare both databases do the same way (SQLite's LIKE ignores case, PostgreSQL's does not).
  if (q.path !== undefined) add(`substr(path, 1, ${Number(q.path.length)}) = ?`, q.path);
  if (q.client !== undefined) add('client_ip = ?', q.client);
  if (q.traceId !== undefined) add('trace_id = ?', q.traceId);
  if (q.cursor !== undefined) add('id < ?', q.cursor);
  return { sql: parts.length ? `WHERE ${parts.join(' AND ')}` : '', params };
}

/** Keeps records in memory: for embedding and tests. */
export class MemoryLogStore implements LogStore {
  readonly kind = 'memory';
  private rows: StoredRecord[] = [];
  private nextId = 1;

  async init(): Promise<void> {}

  async write(batch: readonly RequestRecord[]): Promise<void> {
    for (const r of batch) this.rows.push({ ...r, id: this.nextId++ });
  }

  private matches(q: Omit<LogQuery, 'limit'>, r: StoredRecord): boolean {
    return (
      (q.service === undefined || r.service === q.service) &&
      (q.server === undefined || r.server === q.server) &&
      (!q.status || (r.status >= q.status.min && r.status <= q.status.max)) &&
      (q.since === undefined || r.time >= q.since) &&
      (q.until === undefined || r.time < q.until) &&
      (q.path === undefined || r.path.startsWith(q.path)) &&
      (q.client === undefined || r.clientIp === q.client) &&
      (q.traceId === undefined || r.traceId === q.traceId) &&
      (q.cursor === undefined || r.id < q.cursor)
    );
  }

  async query(q: LogQuery): Promise<StoredRecord[]> {
    const out: StoredRecord[] = [];
    for (let i = this.rows.length - 1; i >= 0 && out.length < q.limit; i--) if (this.matches(q, this.rows[i] as StoredRecord)) out.push(this.rows[i] as StoredRecord);
    return out;
  }

  async statRows(q: Omit<LogQuery, 'limit' | 'cursor'>, cap: number): Promise<StatRow[]> {
    const out: StatRow[] = [];
    for (let i = this.rows.length - 1; i >= 0 && out.length < cap; i--) {
      const r = this.rows[i] as StoredRecord;
      if (this.matches(q, r)) out.push({ time: r.time, service: r.service ?? null, server: r.server ?? null, status: r.status, totalMs: r.totalMs });
    }
    return out;
  }

  async prune(olderThan: number, maxRows: number): Promise<void> {
    this.rows = this.rows.filter((r) => r.time >= olderThan);
    if (maxRows > 0 && this.rows.length > maxRows) this.rows = this.rows.slice(this.rows.length - maxRows);
  }

  async close(): Promise<void> {}
}
