/**
 * What one attempt tells about a server: counters, latency average, and the
 * passive health and circuit breaker verdicts that follow from it.
 */

import type { ServiceConfig } from '../config/schema/service.ts';
import type { Logger } from '../observe/logger.ts';
import { type AttemptOutcome, isClientGone } from './attempt.ts';
import { type CircuitChange, leaveCircuit, recordCircuit } from './circuit-breaker.ts';
import { type EjectionChange, type EjectionScope, recordPassive } from './passive-health.ts';
import { LATENCY_DECAY_MS, type UpstreamServer } from './server.ts';

/**
 * A circuit or ejection change, as observers (logs, metrics, dashboard, API) receive it.
 * Plain data: worker threads post it to the main thread.
 */
export type UpstreamChange = { service: string; at: number } & ({ kind: 'circuit'; change: CircuitChange } | { kind: 'ejection'; change: EjectionChange });

/** The log line for a change: warn when a server leaves, info when it comes back. */
export function logUpstreamChange(log: Logger, event: UpstreamChange): void {
  if (event.kind === 'circuit')
    log[event.change.to === 'closed' ? 'info' : 'warn']({ service: event.service, ...event.change }, `circuit ${event.change.from} → ${event.change.to}`);
  else log.warn({ service: event.service, ...event.change }, 'server ejected by passive health');
}

const clientGone = (outcome: AttemptOutcome) => outcome.kind === 'failed' && isClientGone(outcome.error);

/** Whether an attempt counts as a failure of the server (not of the client). */
/** What recording needs of the service: its name and settings, and the scope passive health ejects within. */
export interface OutcomeScope extends EjectionScope {
  readonly name: string;
  readonly config: ServiceConfig;
}

export function isServerFailure(service: OutcomeScope, outcome: AttemptOutcome): boolean {
  if (outcome.kind === 'failed') return !clientGone(outcome);
  const status = outcome.status;
  // Indexed, not for-of: the config is frozen, and for-of over a frozen array allocates its iterator and results (see metrics.ts findServer).
  const ranges = service.config.passive_health.failure_statuses;
  for (let i = 0; i < ranges.length; i++) {
    const r = ranges[i] as (typeof ranges)[number];
    if (status >= r.min && status <= r.max) return true;
  }
  return false;
}

/** Where recording tells the changes it makes (made once per service, not per request). */
export interface OutcomeListeners {
  ejection(change: EjectionChange): void;
  circuit(change: CircuitChange): void;
}

export function recordOutcome(service: OutcomeScope, server: UpstreamServer, outcome: AttemptOutcome, latencyMs: number, now: number, on: OutcomeListeners): boolean {
  if (clientGone(outcome)) {
    server.countRequest(false);
    // Says nothing about the server; a half-open trial slot is given back.
    leaveCircuit(server);
    return false;
  }
  const failed = isServerFailure(service, outcome);
  server.countRequest(failed);
  updateEwma(server, failed ? Math.max(latencyMs, service.config.timeouts.response_header) : latencyMs, now);
  recordPassive(service, server, failed, now, service.config.passive_health, on.ejection);
  recordCircuit(server, failed, now, service.config.circuit_breaker, on.circuit);
  return failed;
}

/**
 * Peak EWMA (as in Finagle and linkerd): a slower sample replaces the average at
 * once, faster ones pull it down with exponential decay over time.
 */
export function updateEwma(server: UpstreamServer, sampleMs: number, now: number): void {
  const previous = server.ewma;
  if (previous === 0 || sampleMs > previous) {
    server.setEwma(sampleMs, now);
  } else {
    const w = Math.exp(-Math.max(0, now - server.ewmaAt) / LATENCY_DECAY_MS);
    server.setEwma(previous * w + sampleMs * (1 - w), now);
  }
}
