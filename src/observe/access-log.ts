/**
 * Access-log lines to stdout or a file: JSON (one object per line) or the
 * common/combined text formats. The file is reopened on SIGUSR1/SIGHUP so log
 * rotation tools can move it away.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { AccessLogConfig } from '../config/schema/observe.ts';
import type { RequestRecord } from './events.ts';
import { LineBytes } from './line-bytes.ts';
import { appendRecordJson } from './record-json.ts';

function clf(r: RequestRecord, combined: boolean): string {
  const d = new Date(r.time);
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const pad = (n: number) => String(n).padStart(2, '0');
  const when = `${pad(d.getUTCDate())}/${months[d.getUTCMonth()]}/${d.getUTCFullYear()}:${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
  const line = `${r.clientIp} - - [${when}] "${r.method} ${r.path} ${r.protocol}" ${r.status} ${r.bytesOut}`;
  return combined ? `${line} "-" "${(r.userAgent ?? '-').replace(/"/g, '\\"')}"` : line;
}

/** Pending lines are written when they reach this many bytes (nginx's `buffer=64k`)… */
const FLUSH_BYTES = 64 * 1024;
/** …or at most this long after the first of them, whichever comes first. */
const FLUSH_MS = 100;

/** Open sinks, for the exit hook: what is still pending is written as the process exits, a crash included. */
const openSinks = new Set<AccessLogSink>();
process.on('exit', () => {
  for (const sink of openSinks) sink.flush();
});

/**
 * Lines are collected and written in one system call per 64 KiB or, for a file,
 * at most 100 ms after the first pending line: under load one write carries a hundred
 * lines or more (one per event-loop turn, as before, carried a handful and showed
 * in perf); when quiet a line still reaches the file within a tenth of a second.
 * Standard output keeps one write per event-loop turn: once Node has touched
 * process.stdout, a pipe there is non-blocking, and a pipe reader that falls
 * behind should see small writes, not 64 KiB ones. Lines still pending when the
 * process exits are written by the exit hook above.
 */
export class AccessLogSink {
  private fd: number;
  readonly path: string | undefined;
  /** Lines not written yet, each ending in a newline, as the bytes the write hands over. */
  private readonly pending = new LineBytes(FLUSH_BYTES);
  private pendingLines = 0;
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly scheduledFlush = () => {
    this.scheduled = false;
    this.timer = undefined;
    this.writePending();
  };
  private readonly onWriteError: (err: Error, lines: number) => void;

  /**
   * `path` undefined = stdout. Throws when the file cannot be opened: an unwritable access log
   * refuses to start (or to reload), as nginx does. `onWriteError` is told of lines a failed write lost.
   */
  constructor(path: string | undefined, onWriteError: (err: Error, lines: number) => void) {
    this.path = path;
    this.onWriteError = onWriteError;
    try {
      this.fd = path === undefined ? 1 : openSync(path, 'a');
    } catch (err) {
      throw new Error(`cannot open the access log ${path}: ${(err as Error).message} (access_log.output)`);
    }
    openSinks.add(this);
  }

  /** A request's line in the configured format. */
  writeRecord(r: RequestRecord, format: AccessLogConfig['format']): void {
    if (format === 'json') appendRecordJson(r, this.pending);
    else this.pending.text(clf(r, format === 'combined'));
    this.lineEnded();
  }

  /** A line of text (without its newline). */
  write(line: string): void {
    this.pending.text(line);
    this.lineEnded();
  }

  private lineEnded(): void {
    const pending = this.pending;
    // Within the slack the last reserve left.
    pending.bytes[pending.length++] = 0x0a;
    this.pendingLines++;
    // A batch written for its size leaves the timer as it is: when it fires, it writes the lines that came
    // since, sooner after them than FLUSH_MS. Under load that is one timer per FLUSH_MS, not one set and
    // cleared per batch (a Timeout, its list and libuv's timer each time).
    if (pending.length >= FLUSH_BYTES) this.writePending();
    else if (!this.scheduled) {
      this.scheduled = true;
      if (this.path === undefined) setImmediate(this.scheduledFlush);
      else this.timer = setTimeout(this.scheduledFlush, FLUSH_MS).unref();
    }
  }

  /** Writes what is pending now, and stops the timer (exit, reopen, close). */
  flush(): void {
    this.scheduled = false;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.writePending();
  }

  private writePending(): void {
    if (this.pendingLines === 0) return;
    const lines = this.pendingLines;
    const { bytes, length } = this.pending;
    this.pending.length = 0;
    this.pendingLines = 0;
    try {
      writeSync(this.fd, bytes, 0, length);
    } catch (err) {
      // A full disk or closed pipe must not take the data path down; the lines are lost, and counted.
      this.onWriteError(err as Error, lines);
    }
  }

  /** For log rotation: the old file was renamed; start a new one at the configured path. */
  reopen(): void {
    if (this.path === undefined) return;
    this.flush();
    const next = openSync(this.path, 'a');
    const old = this.fd;
    this.fd = next;
    closeSync(old);
  }

  close(): void {
    this.flush();
    openSinks.delete(this);
    if (this.path !== undefined) closeSync(this.fd);
  }
}
