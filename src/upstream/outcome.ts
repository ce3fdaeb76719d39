/**
 * What one attempt tells about a server: counters, latency average, and the
 * passive health and circuit breaker verdicts that follow from it.
 */
import type { AttemptOutcome } from '../proxy/forwarder.ts';
import { S, SF } from '../runtime/shared-state.ts';
import { type CircuitChange, leaveCircuit, recordCircuit } from './circuit-breaker.ts';
import { type EjectionChange, recordPassive } from './passive-health.ts';
import { LATENCY_DECAY_MS, type UpstreamServer } from './server.ts';
import type { ServiceRuntime } from './service.ts';

export interface OutcomeListeners {
  circuit(service: string, change: CircuitChange): void;
  ejection(service: string, change: EjectionChange): void;
}

const clientGone = (outcome: AttemptOutcome) => outcome.kind === 'failed' && (outcome.error as { code?: string }).code === 'VELOCITY_CLIENT_GONE';

/** Whether an attempt counts as a failure of the server (not of the client). */
export function isServerFailure(service: ServiceRuntime, outcome: AttemptOutcome): boolean {
  if (outcome.kind === 'failed') return !clientGone(outcome);
  const status = outcome.status;
  return service.config.passive_health.failure_statuses.some((r) => status >= r.min && status <= r.max);
}

export function recordOutcome(service: ServiceRuntime, server: UpstreamServer, outcome: AttemptOutcome, latencyMs: number, now: number, listeners: OutcomeListeners): boolean {
  server.addInt(S.REQUESTS, 1);
  if (clientGone(outcome)) {
    // Says nothing about the server; a half-open trial slot is given back.
    leaveCircuit(server);
    return false;
  }
  const failed = isServerFailure(service, outcome);
  if (failed) server.addInt(S.FAILURES, 1);
  updateEwma(server, failed ? Math.max(latencyMs, service.config.timeouts.response_header) : latencyMs, now);
  recordPassive(service.servers, server, failed, now, service.config.passive_health, (change) => listeners.ejection(service.name, change));
  recordCircuit(server, failed, now, service.config.circuit_breaker, (change) => listeners.circuit(service.name, change));
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
    const w = Math.exp(-Math.max(0, now - at) / LATENCY_DECAY_MS);
    server.setFloat(SF.EWMA, previous * w + sampleMs * (1 - w));
  }
  server.setFloat(SF.EWMA_AT, now);
}
