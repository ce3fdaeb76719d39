/** The embedded log store: Node's built-in SQLite (no native addon), WAL mode. */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { RequestRecord } from './events.ts';
import { COLUMNS, type LogQuery, type LogStore, recordToRow, rowToRecord, type StatRow, type StoredRecord, whereClause } from './log-store.ts';

const MIGRATIONS = [
  `CREATE TABLE access_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL, request_id TEXT NOT NULL, client_ip TEXT NOT NULL, method TEXT NOT NULL,
    host TEXT NOT NULL, path TEXT NOT NULL, protocol TEXT NOT NULL, status INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL, service TEXT, server TEXT,
    upstream_first_byte_ms REAL, upstream_ms REAL, total_ms REAL NOT NULL, retries INTEGER NOT NULL,
    queue_wait_ms REAL NOT NULL, decision TEXT, error_code TEXT, user_agent TEXT)`,
  'CREATE INDEX access_log_time ON access_log (time)',
  'CREATE INDEX access_log_service_time ON access_log (service, time)',
  'ALTER TABLE access_log ADD COLUMN trace_id TEXT',
  'ALTER TABLE access_log ADD COLUMN span_id TEXT',
  'CREATE INDEX access_log_trace ON access_log (trace_id)',
  'ALTER TABLE access_log ADD COLUMN retry_denied TEXT',
];

export class SqliteLogStore implements LogStore {
  readonly kind = 'sqlite';
  private db: DatabaseSync | undefined;
  private insert: StatementSync | undefined;
  private readonly path: string;

  constructor(path: string) {
    this.path = path;
  }

  async init(): Promise<void> {
    const { DatabaseSync } = await import('node:sqlite');
    if (this.path !== ':memory:') mkdirSync(dirname(this.path), { recursive: true });
    const db = new DatabaseSync(this.path);
    db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 1000;');
    db.exec('CREATE TABLE IF NOT EXISTS velocity_schema (version INTEGER NOT NULL)');
    const row = db.prepare('SELECT max(version) AS v FROM velocity_schema').get() as { v: number | null };
    for (let v = row.v ?? 0; v < MIGRATIONS.length; v++) {
      db.exec('BEGIN');
      db.exec(MIGRATIONS[v] as string);
      db.prepare('INSERT INTO velocity_schema (version) VALUES (?)').run(v + 1);
      db.exec('COMMIT');
    }
    this.insert = db.prepare(`INSERT INTO access_log (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map(() => '?').join(', ')})`);
    this.db = db;
  }

  private get open(): DatabaseSync {
    if (!this.db) throw new Error('log store not initialised');
    return this.db;
  }

  async write(batch: readonly RequestRecord[]): Promise<void> {
    const db = this.open;
    db.exec('BEGIN');
    try {
      for (const r of batch) this.insert?.run(...recordToRow(r));
      db.exec('COMMIT');
    } catch (err) {
      db.exec('ROLLBACK');
      throw err;
    }
  }

  async query(q: LogQuery): Promise<StoredRecord[]> {
    const { sql, params } = whereClause(q, () => '?');
    const rows = this.open.prepare(`SELECT * FROM access_log ${sql} ORDER BY id DESC LIMIT ${Number(q.limit)}`).all(...params);
    return rows.map((r) => rowToRecord(r as Record<string, unknown>));
  }

  async statRows(q: Omit<LogQuery, 'limit' | 'cursor'>, cap: number): Promise<StatRow[]> {
    const { sql, params } = whereClause(q, () => '?');
    const rows = this.open.prepare(`SELECT time, service, server, status, total_ms FROM access_log ${sql} ORDER BY id DESC LIMIT ${Number(cap)}`).all(...params);
    return rows.map((r) => {
      const row = r as Record<string, unknown>;
      return {
        time: Number(row.time),
        service: (row.service as string | null) ?? null,
        server: (row.server as string | null) ?? null,
        status: Number(row.status),
        totalMs: Number(row.total_ms),
      };
    });
  }

  async prune(olderThan: number, maxRows: number): Promise<void> {
    const db = this.open;
    db.prepare('DELETE FROM access_log WHERE time < ?').run(olderThan);
    if (maxRows > 0) db.prepare('DELETE FROM access_log WHERE id <= (SELECT max(id) FROM access_log) - ?').run(maxRows);
  }

  async close(): Promise<void> {
    this.db?.close();
    this.db = undefined;
  }
}
