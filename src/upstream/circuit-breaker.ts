/**
 * Circuit breaker per server, in the server's shared slot so every thread sees one
 * state. Closed → open when, over a rolling window, the failure ratio reaches
 * `failure_ratio` (with at least `min_requests`), or `consecutive_failures` fail in a
 * row. Open for `open_duration × 2^(opens in a row)` capped at `max_open_duration`;
 * then half-open admits `half_open_requests` trials: a success closes it, a failure
 * re-opens it for twice as long. A circuit that stayed closed for `max_open_duration`
 * starts over at `open_duration`; one that re-opens sooner keeps doubling, so a
 * flapping server is not hammered each time it comes back.
 *
 * Every transition runs under the server's spin lock and writes the state word last,
 * so lock-free readers (`circuitAdmits`, the closed fast path) never see half a change.
 */

import { cappedBackoff } from '../backoff.ts';
import type { ServiceConfig } from '../config/schema/service.ts';
import { CIRCUIT_CLOSED, CIRCUIT_HALF_OPEN, CIRCUIT_OPEN, type CIRCUIT_STATES, WINDOW_BUCKETS } from '../state/server-cells.ts';
import type { UpstreamServer } from './server.ts';

export type BreakerConfig = ServiceConfig['circuit_breaker'];
type CircuitState = (typeof CIRCUIT_STATES)[number];

export interface CircuitChange {
  server: string;
  from: CircuitState;
  to: CircuitState;
  reason: string;
  /** For `open`: how long it stays open (ms). */
  openForMs?: number;
}

/** Whether the circuit could let a request through now (closed, open long enough, or a trial free). Lock-free. */
export function circuitAdmits(server: UpstreamServer, now: number, halfOpenLimit: number): boolean {
  const state = server.circuitState;
  if (state === CIRCUIT_CLOSED) return true;
  if (state === CIRCUIT_OPEN) return now >= server.circuitOpenUntil;
  return server.circuitTrials < halfOpenLimit;
}

/**
 * Called when a request is counted against the server (after its connection slot
 * was taken): moves an expired open circuit to half-open and takes a trial token in
 * the same locked step. False when the circuit is open or no trial is free.
 */
export function enterCircuit(server: UpstreamServer, now: number, config: BreakerConfig, onChange: (c: CircuitChange) => void): boolean {
  if (!config.enabled || server.circuitState === CIRCUIT_CLOSED) return true;
  return enterOpenCircuit(server, now, config, onChange);
}

/*
 * The locked steps are functions of their own, apart from the per-request checks above and in recordCircuit:
 * a function with a closure that captures its variables allocates their context on every call, the closure's
 * path taken or not (57 bytes per request in recordCircuit, `node bench/alloc.ts`).
 */

/** enterCircuit for a circuit not closed: the transition and the trial token under the lock. */
function enterOpenCircuit(server: UpstreamServer, now: number, config: BreakerConfig, onChange: (c: CircuitChange) => void): boolean {
  let change: CircuitChange | undefined;
  const admitted = server.locked(() => {
    let state = server.circuitState;
    if (state === CIRCUIT_OPEN) {
      if (now < server.circuitOpenUntil) return false;
      server.circuitTrials = 0;
      server.circuitState = CIRCUIT_HALF_OPEN;
      state = CIRCUIT_HALF_OPEN;
      change = { server: server.id, from: 'open', to: 'half-open', reason: 'open duration passed; letting trial requests through' };
    }
    if (state === CIRCUIT_CLOSED) return true;
    const trials = server.circuitTrials;
    if (trials >= config.half_open_requests) return false;
    server.circuitTrials = trials + 1;
    return true;
  });
  // Observers run outside the lock: they log and may be slow.
  if (change) onChange(change);
  return admitted;
}

/** Counts one finished request against the breaker. */
export function recordCircuit(server: UpstreamServer, failed: boolean, now: number, config: BreakerConfig, onChange: (c: CircuitChange) => void): void {
  if (!config.enabled) return;
  const state = server.circuitState;
  // Late answers to requests sent before the circuit opened do not count.
  if (state === CIRCUIT_OPEN) return;
  if (state === CIRCUIT_HALF_OPEN) {
    endTrial(server, failed, now, config, onChange);
    return;
  }
  countInWindow(server, failed, now, config.window);
  if (!failed) {
    if (server.circuitFailures !== 0) server.circuitFailures = 0;
    return;
  }
  const consecutive = server.addCircuitFailure();
  let reason: string | undefined;
  if (consecutive >= config.consecutive_failures) reason = `${consecutive} failures in a row`;
  else {
    const { total, failures } = windowCounts(server, now, config.window);
    if (total >= config.min_requests && failures / total >= config.failure_ratio) reason = `${failures} of ${total} requests failed in the last ${config.window} ms`;
  }
  if (reason) openClosed(server, now, config, reason, onChange);
}

/** A half-open circuit's trial ended: a failure opens it again, a success closes it. */
function endTrial(server: UpstreamServer, failed: boolean, now: number, config: BreakerConfig, onChange: (c: CircuitChange) => void): void {
  const change = server.locked(() =>
    server.circuitState === CIRCUIT_HALF_OPEN ? (failed ? open(server, 'half-open', now, config, 'a trial request failed') : close(server, now)) : undefined,
  );
  if (change) onChange(change);
}

/** Opens a circuit that is still closed when the lock is taken. */
function openClosed(server: UpstreamServer, now: number, config: BreakerConfig, reason: string, onChange: (c: CircuitChange) => void): void {
  const change = server.locked(() => (server.circuitState === CIRCUIT_CLOSED ? open(server, 'closed', now, config, reason) : undefined));
  if (change) onChange(change);
}

/** A trial that ended without an outcome (client gone) gives its token back. */
export function leaveCircuit(server: UpstreamServer): void {
  if (server.circuitState !== CIRCUIT_HALF_OPEN) return;
  server.locked(() => {
    const trials = server.circuitTrials;
    if (server.circuitState === CIRCUIT_HALF_OPEN && trials > 0) server.circuitTrials = trials - 1;
  });
}

/** How long the circuit stays open when it opens now, given the opens before it. Pure. */
export function openDuration(config: BreakerConfig, opensInARow: number): number {
  return cappedBackoff(config.open_duration, config.max_open_duration, opensInARow);
}

/** Under the lock. */
function open(server: UpstreamServer, from: CircuitState, now: number, config: BreakerConfig, reason: string): CircuitChange {
  // The previous open ended at CB_OPEN_UNTIL; closed for long enough since then, the backoff starts over.
  const lastUntil = server.circuitOpenUntil;
  const opens = from === 'closed' && now - lastUntil >= config.max_open_duration ? 0 : server.circuitOpens;
  const openForMs = openDuration(config, opens);
  server.circuitOpens = opens + 1;
  server.circuitOpenUntil = now + openForMs;
  // Slow start ramps from when it can take requests again.
  server.usableSince = now + openForMs;
  server.circuitFailures = 0;
  server.circuitTrials = 0;
  server.clearWindow();
  server.circuitState = CIRCUIT_OPEN;
  return { server: server.id, from, to: 'open', reason, openForMs };
}

/** Under the lock. CB_OPENS is kept: a quick re-open continues the doubling. */
function close(server: UpstreamServer, now: number): CircuitChange {
  server.circuitTrials = 0;
  server.circuitFailures = 0;
  server.usableSince = now;
  server.circuitState = CIRCUIT_CLOSED;
  return { server: server.id, from: 'half-open', to: 'closed', reason: 'a trial request succeeded' };
}

/*
 * The rolling window: WINDOW_BUCKETS cells of (bucket number, requests, failures).
 * Bucket numbers are stored as Int32 and compared by wrapping difference, so they
 * stay correct however large `now / bucketMs` grows.
 */
function bucketOf(now: number, window: number): number {
  return Math.floor(now / Math.max(1, Math.floor(window / WINDOW_BUCKETS))) | 0;
}

function countInWindow(server: UpstreamServer, failed: boolean, now: number, window: number): void {
  const bucket = bucketOf(now, window);
  const b = ((bucket % WINDOW_BUCKETS) + WINDOW_BUCKETS) % WINDOW_BUCKETS;
  if (((bucket - server.windowBucket(b)) | 0) > 0) restartBucket(server, b, bucket);
  server.countInWindowBucket(b, failed);
}

/**
 * A new bucket reuses the oldest cell: one thread clears it. A thread whose clock read is a little behind
 * never rolls a cell back; it counts into the newer bucket.
 */
function restartBucket(server: UpstreamServer, b: number, bucket: number): void {
  server.locked(() => {
    if (((bucket - server.windowBucket(b)) | 0) <= 0) return;
    server.restartWindowBucket(b, bucket);
  });
}

function windowCounts(server: UpstreamServer, now: number, window: number): { total: number; failures: number } {
  const bucket = bucketOf(now, window);
  let total = 0;
  let failures = 0;
  for (let b = 0; b < WINDOW_BUCKETS; b++) {
    const age = (bucket - server.windowBucket(b)) | 0;
    if (age >= 0 && age < WINDOW_BUCKETS) {
      total += server.windowTotal(b);
      failures += server.windowFailures(b);
    }
  }
  return { total, failures };
}
