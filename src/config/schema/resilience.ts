/** Per-service knobs for failure handling. Each has a default a careful operator would pick. */
import { z } from 'zod';
import { duration, hostHeader, nonNegativeInt, positiveDuration, positiveInt, ratio, requestPath, size, statusRange } from '../../config-fields.ts';

/** A cap below its base makes no sense: the error points at the cap. */
function atLeast<K extends string>(cap: K, base: K) {
  return (value: Record<K, number>, ctx: z.RefinementCtx) => {
    if (value[cap] < value[base]) ctx.addIssue({ code: 'custom', path: [cap], message: `must be at least ${base} (${value[base]} ms), got ${value[cap]} ms` });
  };
}

export const timeoutsSchema = z.strictObject({
  /** TCP (and TLS) connect to a server. */
  connect: positiveDuration().default(5_000),
  /** From request sent to the first response header byte. */
  response_header: positiveDuration().default(60_000),
  /** Longest silence between two body chunks, either way. */
  idle: positiveDuration().default(60_000),
  /** Whole exchange with the server, retries included; 0 = no limit. */
  total: duration().default(0),
  /** A WebSocket or TCP connection silent in both directions this long is closed. */
  tunnel: positiveDuration().default(3_600_000),
});

export const retriesSchema = z.strictObject({
  /** Tries in all, the first included: 1 = never retry. */
  attempts: positiveInt().default(3),
  /** Time limit for each try; 0 = only the service's timeouts apply. */
  per_try_timeout: duration().default(0),
  backoff: z
    .strictObject({ base: positiveDuration().default(25), max: positiveDuration().default(1_000) })
    .superRefine(atLeast('max', 'base'))
    .prefault({}),
  /** Statuses from a server that are retried (idempotent requests only). */
  retry_on: z
    .array(
      z.number({ error: 'expected a status code from 500 to 599' }).int().min(500, 'expected a status code from 500 to 599').max(599, 'expected a status code from 500 to 599'),
    )
    .default([502, 503, 504]),
  /** Retries allowed as a fraction of recent requests, so an outage cannot multiply load. */
  budget: ratio().default(0.2),
  /** Retries always allowed per second on top of the budget, so a quiet service can retry at all. */
  min_retries_per_second: nonNegativeInt().default(10),
  /** Request bodies up to this size are kept so a non-idempotent retry can resend them. */
  buffer_body: size().default(64 * 1024),
});

export const passiveHealthSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    consecutive_failures: positiveInt().default(5),
    /** What counts as a failure: connection errors always do, and these statuses. */
    failure_statuses: z.array(statusRange()).default([{ min: 502, max: 504 }]),
    base_ejection: positiveDuration().default(30_000),
    max_ejection: positiveDuration().default(300_000),
    max_ejected_percent: z.number({ error: 'expected a percentage from 0 to 100' }).min(0, 'must be between 0 and 100').max(100, 'must be between 0 and 100').default(50),
  })
  .superRefine(atLeast('max_ejection', 'base_ejection'));

export const circuitBreakerSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    /** Failure ratio over the window that opens the circuit. */
    failure_ratio: ratio()
      .refine((r) => r > 0, 'must be greater than 0')
      .default(0.5),
    window: positiveDuration().default(10_000),
    min_requests: positiveInt().default(20),
    consecutive_failures: positiveInt().default(10),
    open_duration: positiveDuration().default(5_000),
    max_open_duration: positiveDuration().default(60_000),
    half_open_requests: positiveInt().default(3),
  })
  .superRefine(atLeast('max_open_duration', 'open_duration'));

export const queueSchema = z.strictObject({
  /** Requests that may wait for a free server; 0 disables queueing. */
  max_length: nonNegativeInt().default(100),
  timeout: positiveDuration().default(5_000),
});

export const slowStartSchema = z.strictObject({
  /** Ramp time for a returning server's weight; 0 disables. */
  window: duration().default(0),
});

export const healthCheckSchema = z.strictObject({
  type: z.enum(['http', 'tcp', 'grpc', 'none'], { error: 'expected one of http, tcp, grpc, none' }).default('none'),
  path: requestPath().default('/health'),
  expect_status: statusRange().default({ min: 200, max: 399 }),
  interval: positiveDuration().default(2_000),
  timeout: positiveDuration().default(1_000),
  healthy_threshold: positiveInt().default(2),
  unhealthy_threshold: positiveInt().default(3),
  /** Whether servers take traffic before their first check passes. */
  start_healthy: z.boolean().default(true),
  /** Host header for HTTP checks; defaults to the server's host. */
  host: hostHeader().optional(),
  /** For `type: grpc`: the service name asked about in grpc.health.v1.Health/Check ("" = the whole server). */
  grpc_service: z.string().default(''),
});

/** Knobs a service can set and a top-level `defaults` block can set for all services. */
export const serviceKnobsShape = {
  timeouts: timeoutsSchema.prefault({}),
  retries: retriesSchema.prefault({}),
  passive_health: passiveHealthSchema.prefault({}),
  circuit_breaker: circuitBreakerSchema.prefault({}),
  queue: queueSchema.prefault({}),
  slow_start: slowStartSchema.prefault({}),
  health: healthCheckSchema.prefault({}),
  /** Longest a draining server keeps its in-flight requests before it is removed anyway. */
  drain_timeout: positiveDuration().default(30_000),
  /** Per-server concurrent request limit when a server sets none; 0 = unlimited. */
  max_connections: nonNegativeInt().default(0),
};

export const serviceKnobsSchema = z.strictObject(serviceKnobsShape);
