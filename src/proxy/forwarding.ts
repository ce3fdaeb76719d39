/**
 * One HTTP request's way from its route to the end of its response: the route's middleware, the
 * body, the headers for the server, then the tries — pick a server, forward, and after a failure
 * that may be retried, back off and pick again.
 *
 * Driven by callbacks, not awaits: on the usual path (no middleware, no body to hold, a server free)
 * the first try starts in the same turn as the request and its end is handled in the turn that
 * ended it, with no promise made and no microtask turn taken. A step that has to wait — middleware,
 * a body held for retries, the queue, the backoff — goes on from its promise or timer.
 */
import type { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import { cappedBackoff } from '../backoff.ts';
import { VelocityError } from '../errors.ts';
import type { RetryRefusal } from '../observe/events.ts';
import type { AttemptSpan } from '../observe/tracing.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { type AttemptOutcome, IDEMPOTENT_METHODS, isClientGone } from '../upstream/attempt.ts';
import type { Expiring } from '../upstream/deadline-sweep.ts';
import type { Lease } from '../upstream/lease.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import type { ClientResponse } from './client-response.ts';
import type { RequestContext } from './context.ts';
import { type AttemptListener, type AttemptRequest, startAttempt } from './forwarder.ts';
import { proxyHttp2, speaksHttp2 } from './h2-forward.ts';
import type { RequestBody } from './proxy-message.ts';
import { abortOnTotalTimeout, abortTryOnTimeout } from './request-abort.ts';
import { type HeldBody, requestBody } from './request-body.ts';
import { attemptResultOf, traceHeaderSlot } from './trace-headers.ts';

type Body = Buffer | HeldBody | RequestBody | null;

/** What a forwarding reports to (the request handler). */
export interface ForwardingOwner {
  /** Answers `error` to the client and records it. */
  fail(ctx: RequestContext, error: VelocityError): void;
  /** The data path is done with the request (called once); `at` is a performance.now() reading of that moment, when the caller took one. */
  pathDone(ctx: RequestContext, at?: number): void;
}

export class Forwarding implements AttemptRequest, AttemptListener, Expiring {
  private readonly plane: DataPlane;
  private readonly ctx: RequestContext;
  private readonly owner: ForwardingOwner;
  private service: ServiceRuntime | undefined = undefined;
  private over = false;

  // What every try sends (the pool reads these).
  readonly method: string;
  path: string;
  headers: string[] = NO_HEADERS;
  body: Body = null;
  responseHeaderTimeout = 0;
  idleTimeout = 0;

  // The tries.
  private clientRes: ClientResponse;
  private replayable = true;
  /** A try's socket may still hold bytes of the held body (bodyLingers): it is not given back. */
  private bodyLingering = false;
  private traceAt = -1;
  /** The servers tried so far, made when a retry is first considered: until then only the lease's server was. */
  private triedSet: Set<UpstreamServer> | undefined = undefined;
  private attempt = 0;
  private lease: Lease | undefined = undefined;
  private span: AttemptSpan | undefined = undefined;
  private upstreamStart = 0;

  // The total and per-try timeouts (performance.now() values, 0: none), checked by the thread's deadline sweep
  // a few times a second rather than by a timer per request and per try.
  /** The sooner of the two (Expiring). */
  deadline = 0;
  private totalDeadline = 0;
  private tryDeadline = 0;
  /** Whether this request is in the sweep. */
  private timed = false;

  constructor(plane: DataPlane, ctx: RequestContext, owner: ForwardingOwner) {
    this.plane = plane;
    this.ctx = ctx;
    this.owner = owner;
    this.method = ctx.record.method;
    this.path = ctx.url;
    this.clientRes = ctx.res;
  }

  /** UpstreamRequest: a try's socket did not take the held body's bytes at once. */
  bodyLingers(): void {
    this.bodyLingering = true;
  }

  /** Sticky cookies and rate-limit headers, as set when the response head arrives. */
  get extraResponseHeaders(): [string, string | string[]][] | undefined {
    return this.ctx.responseHeaders;
  }

  /** Forwards the request to `routed` (or where its middleware sends it). */
  start(routed: ServiceRuntime): void {
    const run = this.ctx.run;
    if (run) this.after(run.start(routed, this.plane), this.withService);
    else {
      // Called directly, not through step(): a call through a function value is not inlined.
      try {
        this.withService(routed);
      } catch (err) {
        this.crash(err);
      }
    }
  }

  /** `next(value)` once `pending` settles; a rejection is a crash of the data path. */
  private after<T>(pending: Promise<T>, next: (this: Forwarding, value: T) => void): void {
    pending.then(
      (value) => this.step(next, value),
      (err: unknown) => this.crash(err),
    );
  }

  private step<T>(next: (this: Forwarding, value: T) => void, value: T): void {
    try {
      next.call(this, value);
    } catch (err) {
      this.crash(err);
    }
  }

  private withService(service: ServiceRuntime | undefined): void {
    if (!service) return void this.end(undefined);
    const { ctx } = this;
    ctx.record.service = service.name;
    if (speaksHttp2(service)) return void this.toHttp2(service);
    this.service = service;
    // Counted in the budget's window of the request's arrival (a clock read less per request).
    service.retryBudget.recordRequest(ctx.record.time);
    const pending = ctx.run?.body ?? requestBody(ctx.req, service.config.retries.buffer_body, ctx.record);
    if (pending instanceof Promise) this.after(pending, this.withBody);
    else this.withBody(pending);
  }

  /**
   * A service of HTTP/2 servers: h2-forward takes the request. Apart from withService, whose every call would
   * otherwise allocate the context these closures capture.
   */
  private toHttp2(service: ServiceRuntime): void {
    const { ctx } = this;
    this.after(
      proxyHttp2(this.plane, ctx, service, (error) => this.owner.fail(ctx, error)),
      () => this.end(undefined),
    );
  }

  private withBody(body: Body | VelocityError): void {
    if (body instanceof VelocityError) return void this.end(body);
    const { ctx, plane } = this;
    const { req, run } = ctx;
    const timeouts = (this.service as ServiceRuntime).config.timeouts;
    this.body = body;
    this.replayable = !(body && typeof (body as RequestBody).pipe === 'function');
    const forwarded = ctx.headersForUpstream(plane.trustsPeer(req));
    const headers = run ? run.requestHeaders(forwarded) : forwarded;
    this.headers = headers;
    this.traceAt = traceHeaderSlot(headers, ctx);
    if (run) {
      this.path = run.url;
      run.forwarded(this.method, this.path, headers, body);
      this.clientRes = run.response();
    }
    this.responseHeaderTimeout = timeouts.response_header;
    this.idleTimeout = timeouts.idle;
    if (timeouts.total > 0) {
      this.totalDeadline = performance.now() + timeouts.total;
      this.timeDeadlines();
    }
    this.pick();
  }

  private pick(): void {
    const picked = this.plane.select(this.service as ServiceRuntime, this.ctx, this.attempt === 0 ? NO_SERVERS : this.tried(), this.ctx.abort);
    if (picked instanceof Promise) {
      // The upstream time counts a wait in the queue; without one it starts with the first lease (its clock read).
      if (this.attempt === 0) this.upstreamStart = performance.now();
      this.after(picked, this.send);
    } else this.send(picked);
  }

  private send(lease: Lease | VelocityError): void {
    if (lease instanceof VelocityError) return void this.end(lease);
    const { ctx, plane } = this;
    const service = this.service as ServiceRuntime;
    const retries = service.config.retries;
    const server = lease.server;
    if (this.attempt > 0) this.tried().add(server);
    else if (this.upstreamStart === 0) this.upstreamStart = lease.started;
    this.lease = lease;
    this.attempt++;
    ctx.record.server = server.id;
    plane.stickTo(service, server, ctx);
    if (retries.per_try_timeout > 0) {
      // From the lease's clock read, just taken.
      this.tryDeadline = lease.started + retries.per_try_timeout;
      this.timeDeadlines();
    }
    const trace = ctx.trace;
    if (trace) {
      const span = trace.startAttempt();
      this.span = span;
      if (this.traceAt >= 0) this.headers[this.traceAt] = trace.traceparent(span);
    }
    startAttempt(plane.pools.get(server, service.poolOptions()), this, this.clientRes, lease.started, ctx.abort, this);
  }

  /**
   * Whether a response with `status` is held back for another try rather than passed on: a status the
   * service retries, of an idempotent request with tries, a server and budget left. Asked only when
   * a try's head arrives, so the usual response costs one set lookup.
   */
  holdsBack(status: number): boolean {
    const service = this.service as ServiceRuntime;
    if (!service.retryStatuses.has(status)) return false;
    if (this.attempt >= service.config.retries.attempts || !this.replayable || !IDEMPOTENT_METHODS.has(this.method)) return false;
    const now = Date.now();
    return service.hasAvailableServer(this.tried(), now) && service.retryBudget.hasRoom(now);
  }

  /** The servers tried so far (asked only after the first try started). */
  private tried(): Set<UpstreamServer> {
    this.triedSet ??= new Set([(this.lease as Lease).server]);
    return this.triedSet;
  }

  /** The try ended (in the turn that ended it): record it, then end the request or try again. */
  attemptSettled(outcome: AttemptOutcome): void {
    try {
      this.settled(outcome);
    } catch (err) {
      this.crash(err);
    }
  }

  private settled(outcome: AttemptOutcome): void {
    const { ctx } = this;
    const { record, res } = ctx;
    if (this.tryDeadline !== 0) {
      this.tryDeadline = 0;
      this.timeDeadlines();
    }
    const lease = this.lease as Lease;
    const at = performance.now();
    lease.end(outcome, at - lease.started, at);
    if (this.span && ctx.trace?.recording) ctx.trace.endAttempt(this.span, attemptResultOf(lease.server, outcome), this.method);
    record.upstreamMs = at - this.upstreamStart;

    if (outcome.kind === 'response') {
      // A body held for retries, read by no middleware and written out by every try: its memory is reused.
      if (ctx.run === undefined && !this.bodyLingering && Array.isArray(this.body)) ctx.req.releaseBody?.();
      record.status = outcome.status;
      record.bytesOut = outcome.bytesOut;
      record.upstreamFirstByteMs = outcome.firstByteMs;
      return void this.end(undefined, at);
    }
    if (outcome.kind === 'failed' && (outcome.responseStarted || isClientGone(outcome.error))) {
      record.errorCode = outcome.code;
      record.status = res.headersSent ? res.statusCode : 499;
      res.destroy();
      return void this.end(undefined);
    }
    const service = this.service as ServiceRuntime;
    const retries = service.config.retries;
    const idempotent = IDEMPOTENT_METHODS.has(this.method);
    const safeToResend = outcome.kind === 'retryable-status' || idempotent || (outcome.kind === 'failed' && !outcome.requestSent);
    // Why this failure is not retried, if it is not. The budget is asked last, at the time of the failure,
    // so nothing is spent on a retry refused for another reason (past the total timeout, say).
    record.retryDenied = retryRefusal(safeToResend, this.attempt < retries.attempts, this.replayable, ctx.abort.aborted, service, this.tried());
    if (record.retryDenied) {
      const code = outcome.kind === 'failed' ? outcome.code : statusToCode(outcome.status);
      return void this.end(new VelocityError(code, undefined, { cause: outcome.kind === 'failed' ? outcome.error : undefined }));
    }
    record.retries++;
    const cap = cappedBackoff(retries.backoff.base, retries.backoff.max, this.attempt - 1);
    // Through a static method given `this`: an arrow here would make every settled() allocate the context it captures.
    setTimeout(Forwarding.backoffEnded, Math.random() * cap, this);
  }

  private static backoffEnded(forwarding: Forwarding): void {
    forwarding.step(forwarding.afterBackoff, undefined);
  }

  private afterBackoff(): void {
    if (this.ctx.abort.aborted) return void this.end(new VelocityError('UPSTREAM_TIMEOUT'));
    this.pick();
  }

  /** Sets `deadline` to the sooner timeout, and puts the request in the sweep the first time it has one. */
  private timeDeadlines(): void {
    const total = this.totalDeadline;
    const perTry = this.tryDeadline;
    this.deadline = total === 0 ? perTry : perTry === 0 ? total : Math.min(total, perTry);
    if (this.deadline !== 0 && !this.timed && !this.over) {
      this.timed = true;
      this.plane.pools.sweep.add(this);
    }
  }

  /** A timeout passed (the sweep, up to a tick late): the total one aborts the request, the per-try one the try in flight. */
  expire(now: number): void {
    if (this.totalDeadline !== 0 && now >= this.totalDeadline) {
      this.totalDeadline = 0;
      this.tryDeadline = 0;
      this.timeDeadlines();
      abortOnTotalTimeout(this.ctx.abort);
    } else if (this.tryDeadline !== 0 && now >= this.tryDeadline) {
      this.tryDeadline = 0;
      this.timeDeadlines();
      abortTryOnTimeout(this.ctx.abort);
    }
  }

  /** The data path is done: answers `error` if there is one, once. `at`: a performance.now() reading of the end, if one was taken. */
  private end(error: VelocityError | undefined, at?: number): void {
    if (this.over) return;
    this.over = true;
    if (this.timed) {
      this.timed = false;
      this.plane.pools.sweep.delete(this);
    }
    if (error) this.owner.fail(this.ctx, error);
    this.owner.pathDone(this.ctx, at);
  }

  private crash(err: unknown): void {
    this.plane.log.error({ err, requestId: this.ctx.record.requestId }, 'unexpected error on the data path');
    this.lease?.end();
    this.end(new VelocityError('INTERNAL'));
  }
}

const NO_HEADERS: string[] = [];
const NO_SERVERS: ReadonlySet<UpstreamServer> = new Set();

/** Why a failed try is not retried, or undefined when it is (one retry is then taken from the budget). */
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
