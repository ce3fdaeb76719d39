/** The log store for real deployments: PostgreSQL through the pure-JS `pg` client. */
import type * as Pg from 'pg';
import { optionalModule } from '../optional-module.ts';
import type { RequestRecord } from './events.ts';
import { COLUMNS, type LogQuery, type LogStore, recordToRow, rowToRecord, type StatRow, type StoredRecord, whereClause } from './log-store.ts';

/** The PostgreSQL client package, loaded when a config first keeps logs in PostgreSQL. */
const pg = optionalModule<typeof Pg>('pg', 'the postgres log store');

const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS access_log (
    id BIGSERIAL PRIMARY KEY,
    time BIGINT NOT NULL, request_id TEXT NOT NULL, client_ip TEXT NOT NULL, method TEXT NOT NULL,
    host TEXT NOT NULL, path TEXT NOT NULL, protocol TEXT NOT NULL, status INTEGER NOT NULL,
    bytes_in BIGINT NOT NULL, bytes_out BIGINT NOT NULL, service TEXT, server TEXT,
    upstream_first_byte_ms DOUBLE PRECISION, upstream_ms DOUBLE PRECISION, total_ms DOUBLE PRECISION NOT NULL,
    retries INTEGER NOT NULL, queue_wait_ms DOUBLE PRECISION NOT NULL, decision TEXT, error_code TEXT, user_agent TEXT);
   CREATE INDEX IF NOT EXISTS access_log_time ON access_log (time);
   CREATE INDEX IF NOT EXISTS access_log_service_time ON access_log (service, time);`,
  `ALTER TABLE access_log ADD COLUMN IF NOT EXISTS trace_id TEXT;
   ALTER TABLE access_log ADD COLUMN IF NOT EXISTS span_id TEXT;
   CREATE INDEX IF NOT EXISTS access_log_trace ON access_log (trace_id);`,
  'ALTER TABLE access_log ADD COLUMN IF NOT EXISTS retry_denied TEXT',
];

export class PostgresLogStore implements LogStore {
  readonly kind = 'postgres';
  private readonly pool: Pg.Pool;

  constructor(url: string) {
    // Short timeouts: the writer retries with backoff; requests never wait for the database.
    this.pool = new (pg().Pool)({ connectionString: url, max: 2, connectionTimeoutMillis: 2_000, idleTimeoutMillis: 10_000, query_timeout: 10_000 });
    this.pool.on('error', () => undefined);
  }

  async init(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('CREATE TABLE IF NOT EXISTS velocity_schema (version INTEGER NOT NULL)');
      const { rows } = await client.query('SELECT max(version) AS v FROM velocity_schema');
      for (let v = Number(rows[0]?.v ?? 0); v < MIGRATIONS.length; v++) {
        await client.query('BEGIN');
        await client.query(MIGRATIONS[v] as string);
        await client.query('INSERT INTO velocity_schema (version) VALUES ($1)', [v + 1]);
        await client.query('COMMIT');
      }
    } finally {
      client.release();
    }
  }

  async write(batch: readonly RequestRecord[]): Promise<void> {
    if (batch.length === 0) return;
    const params: (string | number | null)[] = [];
    const tuples = batch.map((r) => {
      const row = recordToRow(r);
      const start = params.length;
      params.push(...row);
      return `(${row.map((_, i) => `$${start + i + 1}`).join(', ')})`;
    });
    await this.pool.query(`INSERT INTO access_log (${COLUMNS.join(', ')}) VALUES ${tuples.join(', ')}`, params);
  }

  async query(q: LogQuery): Promise<StoredRecord[]> {
    const { sql, params } = whereClause(q, (n) => `$${n}`);
    const { rows } = await this.pool.query(`SELECT * FROM access_log ${sql} ORDER BY id DESC LIMIT ${Number(q.limit)}`, params);
    return rows.map((r) => rowToRecord(r));
  }

  async statRows(q: Omit<LogQuery, 'limit' | 'cursor'>, cap: number): Promise<StatRow[]> {
    const { sql, params } = whereClause(q, (n) => `$${n}`);
    const { rows } = await this.pool.query(`SELECT time, service, server, status, total_ms FROM access_log ${sql} ORDER BY id DESC LIMIT ${Number(cap)}`, params);
    return rows.map((row) => ({ time: Number(row.time), service: row.service ?? null, server: row.server ?? null, status: Number(row.status), totalMs: Number(row.total_ms) }));
  }

  async prune(olderThan: number, maxRows: number): Promise<void> {
    await this.pool.query('DELETE FROM access_log WHERE time < $1', [olderThan]);
    if (maxRows > 0) await this.pool.query('DELETE FROM access_log WHERE id <= (SELECT max(id) FROM access_log) - $1', [maxRows]);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
