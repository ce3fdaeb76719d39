/**
 * Circuit breaker per server, in the server's shared slot so every thread sees one
 * state. Closed → open when, over a rolling window, the failure ratio passes
 * `failure_ratio` (with at least `min_requests`), or `consecutive_failures` fail in a
 * row. Open for `open_duration × 2^(re-opens)` capped at `max_open_duration`; then
 * half-open admits `half_open_requests` trials: a success closes it, a failure
 * re-opens it for twice as long.
 */
import type { ServiceConfig } from '../config/schema/service.ts';
import { S, SF, WINDOW_BUCKETS } from '../runtime/shared-state.ts';
import { CIRCUIT_CLOSED, CIRCUIT_HALF_OPEN, CIRCUIT_OPEN, CIRCUIT_STATES, type UpstreamServer } from './server.ts';

type BreakerConfig = ServiceConfig['circuit_breaker'];

export interface CircuitChange {
  server: string;
  from: (typeof CIRCUIT_STATES)[number];
  to: (typeof CIRCUIT_STATES)[number];
  reason: string;
  /** For `open`: how long it stays open (ms). */
  openForMs?: number;
}

/** Whether the circuit could let a request through now (closed, open long enough, or a trial free). */
export function circuitAdmits(server: UpstreamServer, now: number, halfOpenLimit: number): boolean {
  const state = server.int(S.CB_STATE);
  if (state === CIRCUIT_CLOSED) return true;
  if (state === CIRCUIT_OPEN) return now >= server.float(SF.CB_OPEN_UNTIL);
  return server.int(S.CB_TRIALS) < halfOpenLimit;
}

/**
 * Called when a request is counted against the server: moves an expired open
 * circuit to half-open and takes a trial slot. False when no trial is free.
 */
export function enterCircuit(server: UpstreamServer, now: number, config: BreakerConfig, onChange: (c: CircuitChange) => void): boolean {
  if (!config.enabled) return true;
  let state = server.int(S.CB_STATE);
  if (state === CIRCUIT_CLOSED) return true;
  if (state === CIRCUIT_OPEN) {
    if (now < server.float(SF.CB_OPEN_UNTIL)) return false;
    if (server.casInt(S.CB_STATE, CIRCUIT_OPEN, CIRCUIT_HALF_OPEN)) {
      server.setInt(S.CB_TRIALS, 0);
      onChange({ server: server.id, from: 'open', to: 'half-open', reason: 'open duration passed; letting trial requests through' });
    }
    state = server.int(S.CB_STATE);
    if (state === CIRCUIT_CLOSED) return true;
  }
  for (;;) {
    const trials = server.int(S.CB_TRIALS);
    if (trials >= config.half_open_requests) return false;
    if (server.casInt(S.CB_TRIALS, trials, trials + 1)) return true;
  }
}

function open(server: UpstreamServer, from: number, now: number, config: BreakerConfig, reason: string, onChange: (c: CircuitChange) => void): void {
  if (!server.casInt(S.CB_STATE, from, CIRCUIT_OPEN)) return;
  const opens = server.addInt(S.CB_OPENS, 1);
  const openForMs = Math.min(config.max_open_duration, config.open_duration * 2 ** opens);
  server.setFloat(SF.CB_OPEN_UNTIL, now + openForMs);
  server.setInt(S.CB_FAILS, 0);
  server.setInt(S.CB_TRIALS, 0);
  for (let b = 0; b < WINDOW_BUCKETS * 3; b++) server.setInt(S.WINDOW + b, 0);
  // Slow start ramps from when it can take requests again.
  server.setFloat(SF.USABLE_SINCE, now + openForMs);
  onChange({ server: server.id, from: CIRCUIT_STATES[from] ?? 'closed', to: 'open', reason, openForMs });
}

/** Counts one finished request against the breaker. */
export function recordCircuit(server: UpstreamServer, failed: boolean, now: number, config: BreakerConfig, onChange: (c: CircuitChange) => void): void {
  if (!config.enabled) return;
  const state = server.int(S.CB_STATE);
  if (state === CIRCUIT_HALF_OPEN) {
    if (failed) open(server, CIRCUIT_HALF_OPEN, now, config, 'a trial request failed', onChange);
    else if (server.casInt(S.CB_STATE, CIRCUIT_HALF_OPEN, CIRCUIT_CLOSED)) {
      server.setInt(S.CB_OPENS, 0);
      server.setInt(S.CB_TRIALS, 0);
      server.setFloat(SF.USABLE_SINCE, now);
      onChange({ server: server.id, from: 'half-open', to: 'closed', reason: 'a trial request succeeded' });
    }
    return;
  }
  // Late answers to requests sent before the circuit opened do not count.
  if (state === CIRCUIT_OPEN) return;

  let consecutive = 0;
  if (failed) consecutive = server.addInt(S.CB_FAILS, 1) + 1;
  else server.setInt(S.CB_FAILS, 0);
  const bucketMs = Math.max(1, Math.floor(config.window / WINDOW_BUCKETS));
  const bucket = Math.floor(now / bucketMs);
  const cell = S.WINDOW + (bucket % WINDOW_BUCKETS) * 3;
  const stamp = server.int(cell);
  if (stamp !== (bucket | 0) && server.casInt(cell, stamp, bucket | 0)) {
    server.setInt(cell + 1, 0);
    server.setInt(cell + 2, 0);
  }
  server.addInt(cell + 1, 1);
  if (failed) server.addInt(cell + 2, 1);
  if (!failed) return;

  if (consecutive >= config.consecutive_failures) {
    open(server, CIRCUIT_CLOSED, now, config, `${consecutive} failures in a row`, onChange);
    return;
  }
  let total = 0;
  let failures = 0;
  for (let b = 0; b < WINDOW_BUCKETS; b++) {
    const c = S.WINDOW + b * 3;
    if (bucket - server.int(c) < WINDOW_BUCKETS) {
      total += server.int(c + 1);
      failures += server.int(c + 2);
    }
  }
  if (total >= config.min_requests && failures / total >= config.failure_ratio) {
    open(server, CIRCUIT_CLOSED, now, config, `${failures} of ${total} requests failed in the last ${config.window} ms`, onChange);
  }
}

/** A trial that ended without an outcome (client gone) gives its slot back. */
export function leaveCircuit(server: UpstreamServer): void {
  if (server.int(S.CB_STATE) !== CIRCUIT_HALF_OPEN) return;
  for (;;) {
    const trials = server.int(S.CB_TRIALS);
    if (trials <= 0 || server.casInt(S.CB_TRIALS, trials, trials - 1)) return;
  }
}
