/** Wires the observers a config asks for: metrics, access-log lines, the log store. */
import { observeRoutes } from '../admin/api/observe.ts';
import type { AdminRouter } from '../admin/router.ts';
import type { Config } from '../config/schema/root.ts';
import type { ControlPlane } from '../runtime/control-plane.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { AccessLogSink, formatAccessLine } from './access-log.ts';
import type { RequestRecord } from './events.ts';
import { GrpcMethodMetrics } from './grpc-metrics.ts';
import { type LogStore, MemoryLogStore } from './log-store.ts';
import { LogWriter } from './log-writer.ts';
import type { Logger } from './logger.ts';
import { countGlobal, GM, type MetricSource, renderMetrics } from './metrics.ts';
import { PostgresLogStore } from './postgres-store.ts';
import { SqliteLogStore } from './sqlite-store.ts';

export interface Observability {
  readonly writer: LogWriter | undefined;
  /** Reopens the access-log file (SIGUSR1/SIGHUP). */
  reopen(): void;
  close(): Promise<void>;
}

function makeStore(config: NonNullable<Config['logs']>): LogStore {
  if (config.store === 'postgres') return new PostgresLogStore(config.url as string);
  if (config.store === 'memory') return new MemoryLogStore();
  return new SqliteLogStore(config.path);
}

export async function startObservability(
  config: Config,
  plane: DataPlane,
  control: ControlPlane,
  admin: AdminRouter,
  log: Logger,
  metricSources: readonly MetricSource[] = [],
): Promise<Observability> {
  // Metrics are counted on each serving thread (src/runtime/serving.ts); the observers here run where
  // records arrive: the one data plane, or the main thread's plane that worker threads forward records to.
  const unsubscribe: (() => void)[] = [];
  // Health, ejection and removal events as counters (each is also logged where it happens).
  const onHealth = (change: { up: boolean }) => countGlobal(control.state, change.up ? GM.HEALTH_UP : GM.HEALTH_DOWN);
  const onRemoved = () => countGlobal(control.state, GM.SERVERS_REMOVED);
  const onUpstream = (change: { kind: string }) => {
    if (change.kind === 'ejection') countGlobal(control.state, GM.EJECTIONS);
  };
  control.on('health', onHealth);
  control.on('removed', onRemoved);
  plane.upstreamChanges.on('change', onUpstream);
  unsubscribe.push(() => {
    control.off('health', onHealth);
    control.off('removed', onRemoved);
    plane.upstreamChanges.off('change', onUpstream);
  });

  let sink: AccessLogSink | undefined;
  const output = config.access_log.output;
  if (output !== 'off') sink = new AccessLogSink(output === 'stdout' ? undefined : output);

  // Per-method gRPC counts, from the records of every thread (bounded labels; see grpc-metrics.ts).
  const grpcMetrics = new GrpcMethodMetrics();
  if (config.metrics.enabled) unsubscribe.push(plane.addObserver(grpcMetrics.observe));

  let writer: LogWriter | undefined;
  if (config.logs) {
    writer = new LogWriter(makeStore(config.logs), config.logs, log, {
      dropped: (n) => countGlobal(control.state, GM.LOG_DROPPED, n),
      written: (n) => countGlobal(control.state, GM.LOG_WRITTEN, n),
      failed: () => countGlobal(control.state, GM.LOG_STORE_ERRORS),
    });
    // Requests matter more than their logs: an unreachable store is logged loudly and retried, not fatal.
    await writer.start();
  }

  if (sink || writer) {
    const { sample, include_query, format } = config.access_log;
    unsubscribe.push(
      plane.addObserver((record: RequestRecord) => {
        if (record.service && plane.service(record.service)?.config.access_log === false) return;
        const entry = include_query ? record : { ...record, path: record.path.split('?')[0] ?? record.path };
        writer?.add(entry);
        // Errors are always logged; the rest is sampled.
        if (sink && (sample >= 1 || record.status >= 500 || Math.random() < sample)) sink.write(formatAccessLine(entry, format));
      }),
    );
  }

  admin.add(
    ...observeRoutes({
      metrics: () =>
        config.metrics.enabled
          ? renderMetrics(
              control,
              (service) => {
                const s = plane.service(service);
                return s ? plane.queueFor(s).length : 0;
              },
              [...metricSources, (out) => grpcMetrics.render(out)],
            )
          : undefined,
      store: () => writer?.store,
    }),
  );

  return {
    writer,
    reopen: () => sink?.reopen(),
    async close() {
      for (const u of unsubscribe) u();
      sink?.close();
      await writer?.close();
    },
  };
}
