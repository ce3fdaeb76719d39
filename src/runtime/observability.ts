/**
 * The observers a config asks for, on the main thread: metrics exposition, the
 * access-log sink, the log store — each applied live on reload (a new access-log
 * path receives the next lines, a new log store takes the next entries, metrics
 * turn on or off), and the counters of health, ejection and removal events.
 */
import { observeRoutes } from '../admin/api/observe.ts';
import type { AdminRouter } from '../admin/router.ts';
import type { Config } from '../config/schema/root.ts';
import { AccessLogSink } from '../observe/access-log.ts';
import type { RequestRecord } from '../observe/events.ts';
import { GrpcMethodMetrics } from '../observe/grpc-metrics.ts';
import { type LogStore, MemoryLogStore } from '../observe/log-store.ts';
import { LogWriter } from '../observe/log-writer.ts';
import type { Logger } from '../observe/logger.ts';
import { type Collectors, count, renderMetrics } from '../observe/metrics.ts';
import { PostgresLogStore } from '../observe/postgres-store.ts';
import { SqliteLogStore } from '../observe/sqlite-store.ts';
import type { ControlPlane } from '../upstream/control-plane.ts';
import type { DataPlane } from './data-plane.ts';
import type { Subsystem } from './reload.ts';

function makeStore(config: NonNullable<Config['logs']>): LogStore {
  if (config.store === 'postgres') return new PostgresLogStore(config.url as string);
  if (config.store === 'memory') return new MemoryLogStore();
  return new SqliteLogStore(config.path);
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** How often a failing access log is logged again (each failure is counted). */
const WRITE_ERROR_LOG_MS = 60_000;

export class Observability {
  private config: Config;
  private sink: AccessLogSink | undefined;
  private writer: LogWriter | undefined;
  private readonly plane: DataPlane;
  private readonly control: ControlPlane;
  private readonly log: Logger;
  private readonly unsubscribe: (() => void)[] = [];
  private lastWriteErrorLog = 0;
  private linesLostSinceLog = 0;
  /** Per-method gRPC counts from the records of every thread (bounded labels; see grpc-metrics.ts). */
  private readonly grpcMetrics = new GrpcMethodMetrics();
  /** Stops counting gRPC calls; set while metrics are enabled (records travel from worker threads only while someone listens). */
  private stopGrpcCounting: (() => void) | undefined;

  private constructor(config: Config, plane: DataPlane, control: ControlPlane, log: Logger) {
    this.config = config;
    this.plane = plane;
    this.control = control;
    this.log = log;
  }

  /**
   * Opens the access log and the log store of `config`; throws when the access-log file cannot be opened.
   * `collectors` hand over the samples of features' collected metrics (ACME certificates).
   */
  static async start(config: Config, plane: DataPlane, control: ControlPlane, admin: AdminRouter, log: Logger, collectors: Collectors = {}): Promise<Observability> {
    const o = new Observability(config, plane, control, log);
    o.countEvents();
    o.sink = o.openSink(config);
    o.writer = await o.startWriter(config);
    o.unsubscribe.push(plane.addObserver((record) => o.observe(record)));
    o.countGrpcCalls(config.metrics.enabled);
    admin.add(
      ...observeRoutes({
        metrics: () =>
          o.config.metrics.enabled
            ? renderMetrics(
                control,
                (service) => {
                  const s = plane.service(service);
                  return s ? plane.queueFor(s).length : 0;
                },
                { ...collectors, ...o.grpcMetrics.collectors },
              )
            : undefined,
        store: () => o.writer?.store,
      }),
    );
    return o;
  }

  /** Health, ejection and removal events as counters (each is also logged where it happens). */
  private countEvents(): void {
    const { control, plane } = this;
    const onHealth = (change: { up: boolean }) => count(control.state, 'velocity_health_changes_total', { value: change.up ? 'up' : 'down' });
    const onRemoved = () => count(control.state, 'velocity_servers_removed_total');
    const onUpstream = (change: { kind: string }) => {
      if (change.kind === 'ejection') count(control.state, 'velocity_passive_ejections_total');
    };
    control.on('health', onHealth);
    control.on('removed', onRemoved);
    plane.upstreamChanges.on('change', onUpstream);
    this.unsubscribe.push(() => {
      control.off('health', onHealth);
      control.off('removed', onRemoved);
      plane.upstreamChanges.off('change', onUpstream);
    });
  }

  private countGrpcCalls(enabled: boolean): void {
    if (enabled && !this.stopGrpcCounting) this.stopGrpcCounting = this.plane.addObserver(this.grpcMetrics.observe);
    if (!enabled && this.stopGrpcCounting) {
      this.stopGrpcCounting();
      this.stopGrpcCounting = undefined;
    }
  }

  private observe(record: RequestRecord): void {
    const { sink, writer } = this;
    if (!sink && !writer) return;
    if (record.service && this.plane.service(record.service)?.config.access_log === false) return;
    const { sample, include_query, format } = this.config.access_log;
    const entry = include_query ? record : { ...record, path: record.path.split('?')[0] ?? record.path };
    writer?.add(entry);
    // Errors are always logged; the rest is sampled.
    if (sink && (sample >= 1 || record.status >= 500 || Math.random() < sample)) sink.writeRecord(entry, format);
  }

  private openSink(config: Config): AccessLogSink | undefined {
    const output = config.access_log.output;
    if (output === 'off') return undefined;
    return new AccessLogSink(output === 'stdout' ? undefined : output, (err, lines) => this.noteWriteError(err, lines));
  }

  private noteWriteError(err: Error, lines: number): void {
    count(this.control.state, 'velocity_access_log_lines_lost_total', { by: lines });
    this.linesLostSinceLog += lines;
    const now = Date.now();
    if (now - this.lastWriteErrorLog < WRITE_ERROR_LOG_MS) return;
    this.lastWriteErrorLog = now;
    this.log.error({ err: err.message, output: this.config.access_log.output, linesLost: this.linesLostSinceLog }, 'access-log write failed; lines lost');
    this.linesLostSinceLog = 0;
  }

  private async startWriter(config: Config): Promise<LogWriter | undefined> {
    if (!config.logs) return undefined;
    const { state } = this.control;
    const writer = new LogWriter(makeStore(config.logs), config.logs, this.log, {
      dropped: (n) => count(state, 'velocity_log_entries_dropped_total', { by: n }),
      written: (n) => count(state, 'velocity_log_entries_written_total', { by: n }),
      failed: () => count(state, 'velocity_log_store_errors_total'),
    });
    // Requests matter more than their logs: an unreachable store is logged loudly and retried, not fatal.
    await writer.start();
    return writer;
  }

  /** The access log, the log store and metrics as reload subsystems: all applied live. */
  subsystems(): Subsystem[] {
    return [
      {
        name: 'access log',
        sections: ['access_log'],
        apply: (next, previous) => {
          // Opened before anything else changes: a path that cannot be opened refuses the reload.
          if (next.access_log.output !== previous.access_log.output) {
            const old = this.sink;
            this.sink = this.openSink(next);
            old?.close();
            this.log.info({ output: next.access_log.output }, 'access log output changed');
          }
          this.config = { ...this.config, access_log: next.access_log };
          return undefined;
        },
      },
      {
        name: 'log store',
        sections: ['logs'],
        apply: async (next, previous) => {
          if (same(next.logs, previous.logs)) return undefined;
          const old = this.writer;
          this.writer = await this.startWriter(next);
          // What the old store still buffered is written before it closes.
          await old?.close();
          this.log.info({ store: next.logs?.store ?? 'none' }, 'log store changed');
          return undefined;
        },
      },
      {
        name: 'metrics',
        sections: ['metrics'],
        apply: (next) => {
          // Counting follows on every serving thread with the new topology (serving.ts).
          this.config = { ...this.config, metrics: next.metrics };
          this.countGrpcCalls(next.metrics.enabled);
          return undefined;
        },
      },
    ];
  }

  /** Reopens the access-log file (SIGUSR1/SIGHUP). */
  reopen(): void {
    this.sink?.reopen();
  }

  async close(): Promise<void> {
    for (const u of this.unsubscribe) u();
    this.countGrpcCalls(false);
    this.sink?.close();
    await this.writer?.close();
  }
}
