/** Access log, log store and metrics settings. */
import { z } from 'zod';
import { duration, nonNegativeInt, positiveDuration, positiveInt, ratio, secret } from '../../config-fields.ts';

export const accessLogSchema = z.strictObject({
  /** `stdout`, `off`, or a file path (reopened on SIGUSR1/SIGHUP for log rotation). */
  output: z.string().min(1).default('off'),
  format: z.enum(['json', 'common', 'combined'], { error: 'expected json, common or combined' }).default('json'),
  /** Share of requests logged (errors are always logged). */
  sample: ratio().default(1),
  include_query: z.boolean().default(true),
});

export const logStoreSchema = z
  .strictObject({
    store: z.enum(['sqlite', 'postgres', 'memory'], { error: 'expected sqlite, postgres or memory' }).default('sqlite'),
    /** SQLite file. */
    path: z.string().min(1).default('./velocity-logs.db'),
    /** PostgreSQL connection URL (postgres://user@host:port/db). */
    url: z
      .string()
      .refine((u) => /^postgres(ql)?:\/\//.test(u) && URL.canParse(u), 'expected postgres://user@host:port/database')
      .optional(),
    /** Entries held while the store is slow or down; the oldest are dropped (and counted) past this. */
    buffer: positiveInt().default(10_000),
    batch: positiveInt().default(500),
    flush_interval: positiveDuration().default(1_000),
    retention: z.strictObject({ max_age: duration().default(7 * 86_400_000), max_rows: nonNegativeInt().default(1_000_000) }).prefault({}),
  })
  .refine((s) => s.store !== 'postgres' || s.url !== undefined, { message: 'store postgres needs url', path: ['url'] });

export type AccessLogConfig = z.output<typeof accessLogSchema>;
export type LogStoreConfig = z.output<typeof logStoreSchema>;

/** W3C Trace Context on every request, and optional span export over OTLP/HTTP (protobuf). */
export const tracingSchema = z.strictObject({
  /** Send `traceparent` (and the client's `tracestate`) to servers, with Velocity's attempt span as the parent. */
  propagate: z.boolean().default(true),
  /** Share of new traces (requests without a sampled parent) whose spans are exported; a parent's decision is followed. */
  sample_ratio: ratio().default(1),
  /** `service.name` of the exported spans. */
  service_name: z.string().min(1).default('velocity'),
  otlp: z
    .strictObject({
      /** The collector's traces endpoint, e.g. http://127.0.0.1:4318/v1/traces. */
      endpoint: z.string().refine((u) => /^https?:\/\//.test(u) && URL.canParse(u), 'expected an http:// or https:// URL such as http://127.0.0.1:4318/v1/traces'),
      /** Sent with every export (an API key or Authorization header): secrets, never shown by the API. */
      headers: z.record(z.string(), secret(z.string())).default({}),
      /** Spans per export request. */
      batch_size: positiveInt().default(512),
      /** Spans held while the collector is slow or down; more are dropped and counted. */
      queue_size: positiveInt().default(4096),
      flush_interval: positiveDuration().default(1_000),
      timeout: positiveDuration().default(5_000),
    })
    .optional(),
});

export type TracingConfig = z.output<typeof tracingSchema>;
