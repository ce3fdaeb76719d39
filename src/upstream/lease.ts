/**
 * A request's hold on one server. `acquire` counts the request against the server
 * (connection limit, half-open trial) and returns a lease; `end(outcome)` gives
 * the server back, wakes requests queued for the service on any thread, and
 * records what the attempt said about the server (counters, latency, passive
 * health, circuit breaker). Each happens exactly once: a second `end` does
 * nothing, so every error path may end the lease without asking whether another
 * one did.
 *
 * A tunnel (WebSocket, TCP) knows whether the server answered long before it gives
 * the server back: it calls `record(outcome)` then, and `end()` when it closes.
 */
import { performance } from 'node:perf_hooks';
import type { AttemptOutcome } from './attempt.ts';
import type { UpstreamServer } from './server.ts';

/** What a lease reports to: the service the server was acquired from. */
export interface LeaseOwner {
  /** Counters, latency, passive health and circuit breaker for one finished attempt; `now` is Date.now()'s clock. */
  recordOutcome(server: UpstreamServer, outcome: AttemptOutcome, latencyMs: number, now: number): void;
  /** An attempt that ended without saying anything about the server (never tried): its half-open trial is given back. */
  abandon(server: UpstreamServer): void;
  /** Wakes requests queued for this service on any thread. */
  signalRelease(): void;
}

export class Lease {
  readonly server: UpstreamServer;
  private readonly owner: LeaseOwner;
  /** When the server was acquired (performance.now()): an attempt's latency counts from here. */
  readonly started: number;
  /** The same moment on Date.now()'s clock: recording adds the time since instead of reading it again. */
  private readonly acquiredAt: number;
  private recorded = false;
  private ended = false;

  /** `started` is the performance.now() reading acquire took, `acquiredAt` the epoch ms of it (one clock read for both). */
  constructor(owner: LeaseOwner, server: UpstreamServer, started: number, acquiredAt: number) {
    this.owner = owner;
    this.server = server;
    this.started = started;
    this.acquiredAt = acquiredAt;
  }

  /** Whether end() was called. */
  get isEnded(): boolean {
    return this.ended;
  }

  /**
   * Records the attempt's outcome, while the server stays held; only the first call counts. `at` is a
   * performance.now() reading of when the attempt ended, if the caller took one (else the clock is read).
   */
  record(outcome: AttemptOutcome, latencyMs?: number, at?: number): void {
    if (this.recorded) return;
    this.recorded = true;
    const elapsed = (at ?? performance.now()) - this.started;
    this.owner.recordOutcome(this.server, outcome, latencyMs ?? elapsed, this.acquiredAt + elapsed);
  }

  /**
   * Gives the server back and records `outcome` (unless recorded already; `at` as for record). Without
   * any outcome the attempt counts for nothing. Only the first call counts.
   */
  end(outcome?: AttemptOutcome, latencyMs?: number, at?: number): void {
    if (this.ended) return;
    this.ended = true;
    try {
      if (outcome) this.record(outcome, latencyMs, at);
      else if (!this.recorded) {
        this.recorded = true;
        this.owner.abandon(this.server);
      }
    } finally {
      this.server.release();
      this.owner.signalRelease();
    }
  }
}
