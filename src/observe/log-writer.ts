/**
 * Moves access-log records to the store off the request path: a bounded buffer
 * that drops its OLDEST entries when full (counted, logged once a minute), written
 * in batches; when the store fails, entries stay buffered and writes are retried
 * with backoff, so requests never wait for the database.
 */

import { cappedBackoff } from '../backoff.ts';
import type { LogStoreConfig } from '../config/schema/observe.ts';
import type { RequestRecord } from './events.ts';
import type { LogStore } from './log-store.ts';
import type { Logger } from './logger.ts';

export class LogWriter {
  private buffer: RequestRecord[] = [];
  private dropped = 0;
  private droppedSinceReport = 0;
  private failures = 0;
  private writing = false;
  private nextAttempt = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly reportTimer: NodeJS.Timeout;
  private readonly pruneTimer: NodeJS.Timeout;
  readonly store: LogStore;
  private readonly config: LogStoreConfig;
  private readonly log: Logger;
  private readonly onDrop: (n: number) => void;
  private readonly onWritten: (n: number) => void;
  private readonly onFailed: () => void;
  private healthy = true;
  /** Whether the store's schema is in place; a store unreachable at start is set up on the first write that works. */
  private ready = false;

  constructor(store: LogStore, config: LogStoreConfig, log: Logger, counters: { dropped(n: number): void; written(n: number): void; failed?(): void }) {
    this.store = store;
    this.config = config;
    this.log = log;
    this.onDrop = counters.dropped;
    this.onWritten = counters.written;
    this.onFailed = counters.failed ?? (() => undefined);
    this.timer = setInterval(() => void this.flush(), config.flush_interval);
    this.timer.unref();
    this.reportTimer = setInterval(() => this.reportDrops(), 60_000);
    this.reportTimer.unref();
    this.pruneTimer = setInterval(() => void this.prune(), 60_000);
    this.pruneTimer.unref();
  }

  /** Sets the store up now; false (and a loud log line) when it is not reachable yet. */
  async start(): Promise<boolean> {
    try {
      await this.store.init();
      this.ready = true;
    } catch (err) {
      this.log.error({ store: this.store.kind, err: (err as Error).message }, 'log store unavailable at start; serving without it and retrying');
    }
    return this.ready;
  }

  get droppedTotal(): number {
    return this.dropped;
  }

  get pending(): number {
    return this.buffer.length;
  }

  add(record: RequestRecord): void {
    this.buffer.push(record);
    if (this.buffer.length > this.config.buffer) {
      const excess = this.buffer.length - this.config.buffer;
      this.buffer.splice(0, excess);
      this.dropped += excess;
      this.droppedSinceReport += excess;
      this.onDrop(excess);
    }
    if (this.buffer.length >= this.config.batch) void this.flush();
  }

  /** Writes buffered entries in batches; stops at the first failure and backs off. */
  async flush(): Promise<void> {
    if (this.writing || this.buffer.length === 0 || Date.now() < this.nextAttempt) return;
    this.writing = true;
    try {
      while (this.buffer.length > 0) {
        const batch = this.buffer.slice(0, this.config.batch);
        try {
          if (!this.ready) {
            await this.store.init();
            this.ready = true;
          }
          await this.store.write(batch);
        } catch (err) {
          this.failures++;
          this.onFailed();
          this.nextAttempt = Date.now() + cappedBackoff(250, 5_000, this.failures);
          if (this.healthy) this.log.error({ store: this.store.kind, err: (err as Error).message }, 'log store write failed; buffering and retrying with backoff');
          this.healthy = false;
          return;
        }
        // Entries may have been dropped from the front meanwhile; remove what was written.
        const written = new Set(batch);
        this.buffer = this.buffer.filter((r) => !written.has(r));
        this.onWritten(batch.length);
        if (!this.healthy) this.log.info({ store: this.store.kind }, 'log store writes resumed');
        this.healthy = true;
        this.failures = 0;
      }
    } finally {
      this.writing = false;
    }
  }

  private reportDrops(): void {
    if (this.droppedSinceReport === 0) return;
    this.log.warn({ dropped: this.droppedSinceReport, droppedTotal: this.dropped }, 'access-log entries dropped in the last minute (log store slow or down)');
    this.droppedSinceReport = 0;
  }

  private async prune(): Promise<void> {
    const { max_age, max_rows } = this.config.retention;
    try {
      await this.store.prune(max_age > 0 ? Date.now() - max_age : 0, max_rows);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'log retention pass failed');
    }
  }

  /** A last flush and the store's close, bounded: a database that is down must not hold a shutdown. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.reportTimer);
    clearInterval(this.pruneTimer);
    this.nextAttempt = 0;
    const bounded = (work: Promise<unknown>) => Promise.race([work.catch(() => undefined), new Promise((r) => setTimeout(r, 3_000).unref())]);
    await bounded(this.flush());
    this.reportDrops();
    await bounded(this.store.close());
  }
}
