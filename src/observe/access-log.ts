/**
 * Access-log lines to stdout or a file: JSON (one object per line) or the
 * common/combined text formats. The file is reopened on SIGUSR1/SIGHUP so log
 * rotation tools can move it away.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { AccessLogConfig } from '../config/schema/observe.ts';
import type { RequestRecord } from './events.ts';
import { recordJson } from './record-json.ts';

function clf(r: RequestRecord, combined: boolean): string {
  const d = new Date(r.time);
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const pad = (n: number) => String(n).padStart(2, '0');
  const when = `${pad(d.getUTCDate())}/${months[d.getUTCMonth()]}/${d.getUTCFullYear()}:${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
  const line = `${r.clientIp} - - [${when}] "${r.method} ${r.path} ${r.protocol}" ${r.status} ${r.bytesOut}`;
  return combined ? `${line} "-" "${(r.userAgent ?? '-').replace(/"/g, '\\"')}"` : line;
}

export function formatAccessLine(r: RequestRecord, format: AccessLogConfig['format']): string {
  if (format === 'json') {
    return recordJson(r);
  }
  return clf(r, format === 'combined');
}

/**
 * Lines are collected and written once per event-loop turn: one system call for
 * many requests instead of one each.
 */
export class AccessLogSink {
  private fd: number;
  readonly path: string | undefined;
  private pending: string[] = [];
  private scheduled = false;
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
  }

  write(line: string): void {
    this.pending.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const lines = this.pending.length;
    const chunk = `${this.pending.join('\n')}\n`;
    this.pending = [];
    try {
      writeSync(this.fd, chunk);
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
    if (this.path !== undefined) closeSync(this.fd);
  }
}
