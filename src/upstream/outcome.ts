/**
 * What one attempt tells about a server: counters, latency average, and the
 * passive health and circuit breaker verdicts that follow from it.
 */
import type { AttemptOutcome } from '../proxy/forwarder.ts';
import { S, SF } from '../runtime/shared-state.ts';
import type { UpstreamServer } from './server.ts';
import type { ServiceRuntime } from './service.ts';

/** Peak-EWMA decay time: how fast an old latency observation fades. */
const EWMA_DECAY_MS = 10_000;

/** Whether an attempt counts as a failure of the server (not of the client). */
export function isServerFailure(service: ServiceRuntime, outcome: AttemptOutcome): boolean {
  if (outcome.kind === 'failed') return (outcome.error as { code?: string }).code !== 'VELOCITY_CLIENT_GONE';
  const status = outcome.status;
  return service.config.passive_health.failure_statuses.some((r) => status >= r.min && status <= r.max);
}

export function recordOutcome(service: ServiceRuntime, server: UpstreamServer, outcome: AttemptOutcome, latencyMs: number, now: number): boolean {
  const failed = isServerFailure(service, outcome);
  server.addInt(S.REQUESTS, 1);
  if (failed) server.addInt(S.FAILURES, 1);
  updateEwma(server, failed ? Math.max(latencyMs, service.config.timeouts.response_header) : latencyMs, now);
  return failed;
}

/**
 * Peak EWMA (as in Finagle and linkerd): a slower sample replaces the average at
 * once, faster ones pull it down with exponential decay over time.
 */
export function updateEwma(server: UpstreamServer, sampleMs: number, now: number): void {
  const previous = server.float(SF.EWMA);
  const at = server.float(SF.EWMA_AT);
  if (previous === 0 || sampleMs > previous) {
    server.setFloat(SF.EWMA, sampleMs);
  } else {
    const w = Math.exp(-Math.max(0, now - at) / EWMA_DECAY_MS);
    server.setFloat(SF.EWMA, previous * w + sampleMs * (1 - w));
  }
  server.setFloat(SF.EWMA_AT, now);
}
