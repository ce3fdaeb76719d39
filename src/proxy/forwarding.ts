/**
 * One HTTP request's way from its route to the end of its response: the route's middleware, the
 * body, the headers for the server, then the tries over the HTTP/1.1 pool (attempt-loop.ts decides
 * when to try again).
 *
 * Driven by callbacks, not awaits: on the usual path (no middleware, no body to hold, a server free)
 * the first try starts in the same turn as the request and its end is handled in the turn that
 * ended it, with no promise made and no microtask turn taken. A step that has to wait — middleware,
 * a body held for retries, the queue, the backoff — goes on from its promise or timer.
 */
import type { Buffer } from 'node:buffer';
import { VelocityError } from '../errors.ts';
import type { AttemptSpan } from '../observe/tracing.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { type AttemptOutcome, IDEMPOTENT_METHODS } from '../upstream/attempt.ts';
import type { Lease } from '../upstream/lease.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import { type FailedOutcome, type ForwardingOwner, RequestLoop } from './attempt-loop.ts';
import type { ClientResponse } from './client-response.ts';
import type { RequestContext } from './context.ts';
import { type AttemptListener, type AttemptRequest, startAttempt } from './forwarder.ts';
import { H2Forwarding, speaksHttp2 } from './h2-forward.ts';
import type { RequestBody } from './proxy-message.ts';
import { type HeldBody, requestBody } from './request-body.ts';
import { attemptResultOf, traceHeaderSlot } from './trace-headers.ts';

type Body = Buffer | HeldBody | RequestBody | null;

export class Forwarding extends RequestLoop implements AttemptRequest, AttemptListener {
  // What every try sends (the pool reads these).
  readonly method: string;
  path: string;
  headers: string[] = NO_HEADERS;
  body: Body = null;
  responseHeaderTimeout = 0;
  idleTimeout = 0;

  private clientRes: ClientResponse;
  /** A try's socket may still hold bytes of the held body (bodyLingers): it is not given back. */
  private bodyLingering = false;
  private traceAt = -1;
  private span: AttemptSpan | undefined = undefined;

  constructor(plane: DataPlane, ctx: RequestContext, owner: ForwardingOwner) {
    super(plane, ctx, owner);
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
    // withService called directly, not through step(): a call through a function value is not inlined.
    try {
      const service = run ? run.start(routed, this.plane) : routed;
      if (service instanceof Promise) this.after(service, this.withService);
      else this.withService(service);
    } catch (err) {
      this.crash(err);
    }
  }

  private withService(service: ServiceRuntime | undefined): void {
    if (!service) return void this.finish(undefined);
    const { ctx } = this;
    ctx.record.service = service.name;
    if (speaksHttp2(service)) return void this.toHttp2(service);
    // Counted in the budget's window of the request's arrival (a clock read less per request).
    this.serve(service, ctx.record.time);
    const pending = ctx.run?.body ?? requestBody(ctx.req, service.config.retries.buffer_body, ctx.record);
    if (pending instanceof Promise) this.after(pending, this.withBody);
    else this.withBody(pending);
  }

  /** A service of HTTP/2 servers: its own loop takes the request, and tells the owner. */
  private toHttp2(service: ServiceRuntime): void {
    new H2Forwarding(this.plane, this.ctx, this.owner).start(service);
  }

  private withBody(body: Body | VelocityError): void {
    if (body instanceof VelocityError) return void this.finish(body);
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
    this.startTries(timeouts.total);
  }

  protected tryOn(lease: Lease): void {
    const { ctx, plane } = this;
    const service = this.service as ServiceRuntime;
    const server = lease.server;
    ctx.record.server = server.id;
    plane.stickTo(service, server, ctx);
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
    if (!(this.service as ServiceRuntime).retryStatuses.has(status)) return false;
    return IDEMPOTENT_METHODS.has(this.method) && this.mayTryAgain();
  }

  protected mayResend(): boolean {
    return IDEMPOTENT_METHODS.has(this.method);
  }

  protected tryEnded(lease: Lease, outcome: AttemptOutcome | undefined, at: number): void {
    const { ctx } = this;
    if (this.span && outcome && ctx.trace?.recording) ctx.trace.endAttempt(this.span, attemptResultOf(lease.server, outcome), this.method);
    ctx.record.upstreamMs = at - this.upstreamStart;
  }

  protected answered(outcome: Extract<AttemptOutcome, { kind: 'response' }>, _lease: Lease, at: number): void {
    const { ctx } = this;
    const record = ctx.record;
    // A body held for retries, read by no middleware and written out by every try: its memory is reused.
    if (ctx.run === undefined && !this.bodyLingering && Array.isArray(this.body)) ctx.req.releaseBody?.();
    record.status = outcome.status;
    record.bytesOut = outcome.bytesOut;
    record.upstreamFirstByteMs = outcome.firstByteMs;
    this.finish(undefined, at);
  }

  protected cutShort(outcome: FailedOutcome): void {
    const { record, res } = this.ctx;
    record.errorCode = outcome.code;
    record.status = res.headersSent ? res.statusCode : 499;
    res.destroy();
  }
}

const NO_HEADERS: string[] = [];
