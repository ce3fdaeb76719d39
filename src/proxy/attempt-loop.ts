/**
 * The one attempt loop of every protocol: take a lease on a server, try it, and after a failure that
 * may be sent again, back off and take another — within the service's attempts and retry budget, the
 * total and per-try timeouts, and while the client is there. HTTP/1.1 requests (Forwarding), requests
 * to HTTP/2 servers (H2Forwarding) and tunnels (WebSocket upgrades, TCP connections) differ only in
 * how one try is made and which failures their protocol lets them send again; when a retry is allowed,
 * what it costs and what a lease records are decided here, once.
 *
 * Driven by callbacks, not awaits: on the usual path (no middleware, no body to hold, a server free)
 * the first try starts in the same turn as the request and its end is handled in the turn that ended
 * it, with no promise made and no microtask turn taken. A step that has to wait — the queue, the
 * backoff — goes on from its promise or timer. The timeouts are checked by the thread's deadline sweep
 * a few times a second, not by a timer per request and per try.
 */
import { performance } from 'node:perf_hooks';
import { cappedBackoff } from '../backoff.ts';
import { VelocityError } from '../errors.ts';
import type { RetryRefusal } from '../observe/events.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { type AttemptOutcome, isClientGone } from '../upstream/attempt.ts';
import type { DeadlineSweep, Expiring } from '../upstream/deadline-sweep.ts';
import type { Lease } from '../upstream/lease.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import type { RequestContext } from './context.ts';
import { abortOnTotalTimeout, abortTryOnTimeout, type RequestAbort } from './request-abort.ts';

/** What a request's forwarding reports to (the request handler): the HTTP loops' owner. */
export interface ForwardingOwner {
  /** Answers `error` to the client and records it. */
  fail(ctx: RequestContext, error: VelocityError): void;
  /** The data path is done with the request (called once); `at` is a performance.now() reading of that moment, when the caller took one. */
  pathDone(ctx: RequestContext, at?: number): void;
}

/** A failed try, as the loop sees it. */
export type FailedOutcome = Extract<AttemptOutcome, { kind: 'failed' }>;

/** A lease on a server, the error to answer when none can be had, or the wait for one in the queue. */
export type Picked = Lease | VelocityError | Promise<Lease | VelocityError>;

export abstract class AttemptLoop implements Expiring {
  protected readonly abort: RequestAbort;
  private readonly sweep: DeadlineSweep;
  /** A tunnel keeps its server after a try connected: its lease records the try then and ends when the tunnel closes. */
  private readonly keepsServer: boolean;
  protected service: ServiceRuntime | undefined = undefined;
  private over = false;
  /** Whether a try may send the request again (a streamed body can be sent once). */
  protected replayable = true;
  /** The servers tried so far, made when a retry is first considered: until then only the lease's server was. */
  private triedSet: Set<UpstreamServer> | undefined = undefined;
  /** Whether the try in flight added its server to `triedSet` (it was not tried before). */
  private triedAdded = false;
  protected attempt = 0;
  /** The lease of the try in flight (or of the last one). */
  protected lease: Lease | undefined = undefined;
  /** When the upstream time started: the first lease, or the start of a wait in the queue before it. */
  protected upstreamStart = 0;
  /** Tries sent again because their server never processed them (HTTP/2 GOAWAY, REFUSED_STREAM). */
  private unprocessedResends = 0;

  // The total and per-try timeouts (performance.now() values, 0: none).
  /** The sooner of the two (Expiring). */
  deadline = 0;
  private totalDeadline = 0;
  private tryDeadline = 0;
  /** Whether this loop is in the sweep. */
  private timed = false;

  constructor(sweep: DeadlineSweep, abort: RequestAbort, keepsServer: boolean) {
    this.sweep = sweep;
    this.abort = abort;
    this.keepsServer = keepsServer;
  }

  /** A lease on a server of the service not in `tried`, the error to answer when none can be had, or the wait in the queue for one. */
  protected abstract acquire(tried: ReadonlySet<UpstreamServer>): Picked;
  /** Starts one try on `lease`'s server; it ends by calling attemptSettled (or resendUnprocessed) once. */
  protected abstract tryOn(lease: Lease): void;
  /** Besides a retryable status or a request never sent: whether the protocol lets a failed try be sent again. */
  protected abstract mayResend(): boolean;
  /** The try is over and its lease recorded: traces, access-log fields. */
  protected abstract tryEnded(lease: Lease, outcome: AttemptOutcome | undefined, at: number): void;
  /** A try's answer went to the client (for a tunnel: it connected). */
  protected abstract answered(outcome: Extract<AttemptOutcome, { kind: 'response' }>, lease: Lease, at: number): void;
  /** A try failed after its answer started, or because the client went away: nothing more can be sent. */
  protected abstract cutShort(outcome: FailedOutcome): void;
  /** The loop is over: answers `error` if there is one. Called once. `at`: a performance.now() reading of the end, if one was taken. */
  protected abstract done(error: VelocityError | undefined, at?: number): void;
  /** A step threw: logged by the owner, who knows what to name. */
  protected abstract logCrash(err: unknown): void;
  /** A retry was decided (counted in the access log). */
  protected retrying(): void {}
  /** Why the last failure was not sent again. */
  protected retryRefused(_why: RetryRefusal): void {}

  /** The error to answer when no try succeeded and no other may be made. */
  protected giveUpError(outcome: FailedOutcome | Extract<AttemptOutcome, { kind: 'retryable-status' }>, _server: UpstreamServer): VelocityError {
    if (outcome.kind === 'failed') return new VelocityError(outcome.code, undefined, { cause: outcome.error });
    return new VelocityError(statusToCode(outcome.status));
  }

  /** The error to answer when no lease could be had. */
  protected pickRefused(error: VelocityError): VelocityError {
    return error;
  }

  /** Tries go to `service`; counted in its retry budget's window at `now` (Date.now()'s clock). */
  protected serve(service: ServiceRuntime, now: number): void {
    this.service = service;
    service.retryBudget.recordRequest(now);
  }

  /** Starts the tries; `totalMs` > 0 bounds all of them together. */
  protected startTries(totalMs: number): void {
    if (totalMs > 0) {
      this.totalDeadline = performance.now() + totalMs;
      this.timeDeadlines();
    }
    this.pick();
  }

  /** `next(value)` once `pending` settles; a rejection is a crash of the data path. */
  protected after<T>(pending: Promise<T>, next: (this: this, value: T) => void): void {
    pending.then(
      (value) => this.step(next, value),
      (err: unknown) => this.crash(err),
    );
  }

  protected step<T>(next: (this: this, value: T) => void, value: T): void {
    try {
      next.call(this, value);
    } catch (err) {
      this.crash(err);
    }
  }

  private pick(): void {
    const picked = this.acquire(this.attempt === 0 ? NO_SERVERS : this.tried());
    if (picked instanceof Promise) {
      // The upstream time counts a wait in the queue; without one it starts with the first lease (its clock read).
      if (this.attempt === 0 && this.upstreamStart === 0) this.upstreamStart = performance.now();
      this.after(picked, this.send);
    } else this.send(picked);
  }

  private send(lease: Lease | VelocityError): void {
    if (lease instanceof VelocityError) return void this.finish(this.pickRefused(lease));
    const server = lease.server;
    if (this.attempt > 0) {
      const tried = this.tried();
      this.triedAdded = !tried.has(server);
      tried.add(server);
    } else if (this.upstreamStart === 0) this.upstreamStart = lease.started;
    this.lease = lease;
    this.attempt++;
    const perTry = (this.service as ServiceRuntime).config.retries.per_try_timeout;
    if (perTry > 0) {
      // From the lease's clock read, just taken.
      this.tryDeadline = lease.started + perTry;
      this.timeDeadlines();
    }
    this.tryOn(lease);
  }

  /**
   * Whether an answer just received may be held back for another try rather than passed on: tries, a
   * server and budget left for a request that can be sent again. Asked only for a status the protocol
   * would retry, so the usual response costs nothing here.
   */
  protected mayTryAgain(): boolean {
    const service = this.service as ServiceRuntime;
    if (this.attempt >= service.config.retries.attempts || !this.replayable) return false;
    const now = Date.now();
    return service.hasAvailableServer(this.tried(), now) && service.retryBudget.hasRoom(now);
  }

  /** The servers tried so far (asked only after the first try started). */
  protected tried(): Set<UpstreamServer> {
    this.triedSet ??= new Set([(this.lease as Lease).server]);
    return this.triedSet;
  }

  /** The try ended (in the turn that ended it): record it, then end or try again. */
  attemptSettled(outcome: AttemptOutcome): void {
    try {
      this.settled(outcome);
    } catch (err) {
      this.crash(err);
    }
  }

  private settled(outcome: AttemptOutcome): void {
    this.tryOver();
    const lease = this.lease as Lease;
    const at = performance.now();
    if (outcome.kind === 'response' && this.keepsServer) lease.record(outcome, at - lease.started, at);
    else lease.end(outcome, at - lease.started, at);
    this.tryEnded(lease, outcome, at);
    if (outcome.kind === 'response') return void this.answered(outcome, lease, at);
    if (outcome.kind === 'failed' && (outcome.responseStarted || isClientGone(outcome.error))) {
      this.cutShort(outcome);
      return void this.finish(undefined);
    }
    const service = this.service as ServiceRuntime;
    const retries = service.config.retries;
    const resendable = outcome.kind === 'retryable-status' || !outcome.requestSent || this.mayResend();
    // The budget is asked last, at the time of the failure, so nothing is spent on a retry refused for
    // another reason (past the total timeout, say).
    const refusal = retryRefusal(resendable, this.attempt < retries.attempts, this.replayable, this.abort.aborted, service, this.tried());
    if (refusal) {
      this.retryRefused(refusal);
      return void this.finish(this.giveUpError(outcome, lease.server));
    }
    this.retrying();
    const cap = cappedBackoff(retries.backoff.base, retries.backoff.max, this.attempt - 1);
    // Through a static method given `this`: an arrow here would make every settle allocate the context it captures.
    setTimeout(AttemptLoop.backoffEnded, Math.random() * cap, this);
  }

  /**
   * The try's server never processed it (an HTTP/2 GOAWAY above its last stream id, REFUSED_STREAM): the
   * server is shedding connections in order, not failing. The lease records nothing; the request goes
   * again at once — to any server, that one too on a new connection — without counting as a try or
   * spending budget, a few times at most; past that it is a failed try like any other.
   */
  resendUnprocessed(outcome: FailedOutcome): void {
    try {
      const retries = (this.service as ServiceRuntime).config.retries;
      if (!this.replayable || this.abort.aborted || this.unprocessedResends >= retries.attempts + 2) return void this.settled(outcome);
      this.tryOver();
      const lease = this.lease as Lease;
      lease.end();
      this.tryEnded(lease, outcome, performance.now());
      this.unprocessedResends++;
      this.retrying();
      // Its server is not counted as tried. After a first try, the next lease is the first again (tried() is made from it).
      if (this.attempt === 1) this.triedSet = undefined;
      else if (this.triedAdded) this.tried().delete(lease.server);
      this.attempt--;
      this.pick();
    } catch (err) {
      this.crash(err);
    }
  }

  private tryOver(): void {
    if (this.tryDeadline !== 0) {
      this.tryDeadline = 0;
      this.timeDeadlines();
    }
  }

  private static backoffEnded(loop: AttemptLoop): void {
    loop.step(loop.afterBackoff, undefined);
  }

  private afterBackoff(): void {
    if (this.abort.aborted) return void this.finish(this.pickRefused(new VelocityError('UPSTREAM_TIMEOUT')));
    this.pick();
  }

  /** Sets `deadline` to the sooner timeout, and puts the loop in the sweep the first time it has one. */
  private timeDeadlines(): void {
    const total = this.totalDeadline;
    const perTry = this.tryDeadline;
    this.deadline = total === 0 ? perTry : perTry === 0 ? total : Math.min(total, perTry);
    if (this.deadline !== 0 && !this.timed && !this.over) {
      this.timed = true;
      this.sweep.add(this);
    }
  }

  /** A timeout passed (the sweep, up to a tick late): the total one aborts the request, the per-try one the try in flight. */
  expire(now: number): void {
    if (this.totalDeadline !== 0 && now >= this.totalDeadline) {
      this.totalDeadline = 0;
      this.tryDeadline = 0;
      this.timeDeadlines();
      abortOnTotalTimeout(this.abort);
    } else if (this.tryDeadline !== 0 && now >= this.tryDeadline) {
      this.tryDeadline = 0;
      this.timeDeadlines();
      abortTryOnTimeout(this.abort);
    }
  }

  /** The loop is over: tells `done` once. */
  protected finish(error: VelocityError | undefined, at?: number): void {
    if (this.over) return;
    this.over = true;
    if (this.timed) {
      this.timed = false;
      this.sweep.delete(this);
    }
    this.done(error, at);
  }

  protected crash(err: unknown): void {
    this.logCrash(err);
    this.lease?.end();
    this.finish(new VelocityError('INTERNAL'));
  }
}

/** The loop of an HTTP request, told to its owner and recorded in its access-log record: what the HTTP/1.1 and HTTP/2 forwardings share. */
export abstract class RequestLoop extends AttemptLoop {
  protected readonly plane: DataPlane;
  protected readonly ctx: RequestContext;
  protected readonly owner: ForwardingOwner;

  constructor(plane: DataPlane, ctx: RequestContext, owner: ForwardingOwner) {
    super(plane.pools.sweep, ctx.abort, false);
    this.plane = plane;
    this.ctx = ctx;
    this.owner = owner;
  }

  protected acquire(tried: ReadonlySet<UpstreamServer>): Picked {
    return this.plane.select(this.service as ServiceRuntime, this.ctx, tried, this.ctx.abort);
  }

  protected override retrying(): void {
    this.ctx.record.retries++;
  }

  protected override retryRefused(why: RetryRefusal): void {
    this.ctx.record.retryDenied = why;
  }

  protected done(error: VelocityError | undefined, at?: number): void {
    if (error) this.owner.fail(this.ctx, error);
    this.owner.pathDone(this.ctx, at);
  }

  protected logCrash(err: unknown): void {
    this.plane.log.error({ err, requestId: this.ctx.record.requestId }, 'unexpected error on the data path');
  }
}

const NO_SERVERS: ReadonlySet<UpstreamServer> = new Set();

/** Why a failed try is not sent again, or undefined when it is (one retry is then taken from the budget). */
function retryRefusal(
  safeToResend: boolean,
  triesLeft: boolean,
  replayable: boolean,
  pastTotalTimeout: boolean,
  service: ServiceRuntime,
  tried: ReadonlySet<UpstreamServer>,
): RetryRefusal | undefined {
  if (!safeToResend) return 'not_idempotent';
  if (!triesLeft) return 'attempts';
  if (!replayable) return 'body_streamed';
  if (pastTotalTimeout) return 'total_timeout';
  if (!service.hasAvailableServer(tried)) return 'no_server';
  return service.retryBudget.tryTake(Date.now()) ? undefined : 'budget';
}

function statusToCode(status: number): 'UPSTREAM_TIMEOUT' | 'NO_HEALTHY_SERVER' | 'UPSTREAM_BAD_RESPONSE' {
  if (status === 504) return 'UPSTREAM_TIMEOUT';
  if (status === 503) return 'NO_HEALTHY_SERVER';
  return 'UPSTREAM_BAD_RESPONSE';
}
