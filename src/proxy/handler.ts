/**
 * The HTTP data path for one request: route → guards → select → forward, with
 * retries, and one record to observers at the end. Never throws to the server.
 */
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { cappedBackoff } from '../backoff.ts';
import { VelocityError } from '../errors.ts';
import type { RetryRefusal } from '../observe/events.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { type AttemptOutcome, clientGoneError, isClientGone } from '../upstream/attempt.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import { type Guard, RequestContext } from './context.ts';
import { forwardAttempt } from './forwarder.ts';
import { isGrpcRequest, respondGrpcError } from './grpc.ts';
import { proxyHttp2, speaksHttp2 } from './h2-forward.ts';
import type { UnderscoreHeaders } from './header-names.ts';
import { requestHeadersForUpstream } from './headers.ts';
import { MiddlewareRun } from './middleware-run.ts';
import type { ProxyRequest, ProxyResponse, RequestBody } from './proxy-message.ts';
import { abortOnTotalTimeout, abortTryOnTimeout } from './request-abort.ts';
import { requestBody } from './request-body.ts';
import { checkRequestHead } from './request-head.ts';
import { respondWithError } from './respond.ts';
import { attemptResultOf, traceHeaderSlot } from './trace-headers.ts';
import { isWebSocketUpgrade, proxyWebSocket, TunnelSet } from './websocket.ts';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export class RequestHandler {
  private readonly plane: DataPlane;
  private readonly proto: 'http' | 'https';
  private readonly underscores: UnderscoreHeaders;

  constructor(plane: DataPlane, proto: 'http' | 'https', underscores: UnderscoreHeaders) {
    this.plane = plane;
    this.proto = proto;
    this.underscores = underscores;
  }

  /** Connections that sent a refused head: what was pipelined behind it is refused too, never forwarded. */
  private readonly refused = new WeakSet<object>();

  readonly handle = (req: ProxyRequest, res: ProxyResponse): void => {
    const headProblem = this.refused.has(req.socket)
      ? new VelocityError('BAD_REQUEST', 'an earlier request on this connection was refused')
      : checkRequestHead(req, this.underscores);
    const ctx = new RequestContext(req, res, this.plane.clientIp(req), this.proto, this.plane.tracer);
    if (headProblem) {
      this.refused.add(req.socket);
      res.shouldKeepAlive = false;
      this.refuse(ctx, headProblem);
      return;
    }
    void this.serve(ctx);
  };

  /** The request path for one request, recorded at the end: no closures per request for the promise's outcome. */
  private async serve(ctx: RequestContext): Promise<void> {
    try {
      this.watch(ctx);
      // Awaited only when a guard has to wait: an await of a ready value still costs a turn of the microtask queue.
      const admitted = this.admit(ctx);
      const service = admitted instanceof Promise ? await admitted : admitted;
      if (service) await this.proxy(ctx, service);
    } catch (err) {
      this.plane.log.error({ err, requestId: ctx.record.requestId }, 'unexpected error on the data path');
      this.fail(ctx, new VelocityError('INTERNAL'));
    }
    this.finish(ctx);
  }

  /** Open WebSocket tunnels of this listener. */
  readonly tunnels = new TunnelSet();

  /** Whether an Upgrade request leaves the request path: WebSocket, to a service that allows it. */
  readonly wantsUpgrade = (req: ProxyRequest): boolean => isWebSocketUpgrade(req) && this.plane.route(req.headers.host, req.url ?? '/')?.config.websocket === true;

  /** A WebSocket upgrade (HTTP/1.1): routed and guarded like a request, then tunnelled to a server. */
  readonly handleUpgrade = (req: ProxyRequest, res: ProxyResponse, socket: Duplex, head: Buffer): void => {
    // `res` is bound to the raw socket, so refusals and errors are written like any other.
    res.shouldKeepAlive = false;
    res.once('finish', () => socket.end());
    socket.on('error', () => socket.destroy());
    const headProblem = checkRequestHead(req, this.underscores);
    const ctx = new RequestContext(req, res, this.plane.clientIp(req), this.proto, this.plane.tracer);
    if (headProblem) {
      this.refuse(ctx, headProblem);
      return;
    }
    this.runUpgrade(ctx, socket, head)
      .catch((err: unknown) => {
        this.plane.log.error({ err, requestId: ctx.record.requestId }, 'unexpected error on the WebSocket path');
        this.fail(ctx, new VelocityError('INTERNAL'));
      })
      .finally(() => this.finish(ctx));
  };

  /** Answers a request head that checkRequestHead refused (and records it). */
  private refuse(ctx: RequestContext, problem: VelocityError): void {
    ctx.res.on('close', () => this.finish(ctx));
    this.fail(ctx, problem);
    this.finish(ctx);
  }

  private async runUpgrade(ctx: RequestContext, socket: Duplex, head: Buffer): Promise<void> {
    ctx.res.on('close', () => this.finish(ctx));
    const routed = await this.admit(ctx);
    // The route's middleware decides first (auth, limits, redirects); path and header rules apply to HTTP requests only.
    const service = routed && ctx.run ? await ctx.run.start(routed, this.plane) : routed;
    if (!service) return;
    if (this.plane.draining) return this.fail(ctx, new VelocityError('SHUTTING_DOWN'));
    const error = await proxyWebSocket(this.plane, ctx, service, socket, head, this.tunnels);
    if (error) this.fail(ctx, error);
  }

  private watch(ctx: RequestContext): void {
    const { res } = ctx;
    // One listener for both: a client that leaves before its response ended aborts the try in flight.
    res.on('close', () => {
      if (!res.writableFinished) ctx.abort.abort(clientGoneError());
      this.finish(ctx);
    });
    // While shutting down, finish what arrives on open connections but close them after.
    if (this.plane.draining) res.shouldKeepAlive = false;
  }

  /**
   * Routing and guards: the service to proxy to, or undefined once an error was answered.
   * A promise only when a guard has to wait (a shared rate-limit store, say).
   */
  private admit(ctx: RequestContext): ServiceRuntime | undefined | Promise<ServiceRuntime | undefined> {
    const target = this.plane.routeTarget(ctx.req.headers.host, ctx.url, ctx);
    const service = target?.service;
    if (target?.chain) ctx.run = new MiddlewareRun(ctx, target.chain);
    // Known before the guards, so their refusals count in the service's metrics and logs.
    ctx.record.service = service?.name;
    return this.guard(ctx, service, this.plane.guards, 0);
  }

  /** The guards from the `from`-th on, then the route check; synchronous until a guard's verdict is a promise. */
  private guard(
    ctx: RequestContext,
    service: ServiceRuntime | undefined,
    guards: readonly Guard[],
    from: number,
  ): ServiceRuntime | undefined | Promise<ServiceRuntime | undefined> {
    for (let i = from; i < guards.length; i++) {
      const verdict = (guards[i] as Guard).check(ctx, service);
      if (verdict instanceof Promise) return this.guardAfter(ctx, service, verdict, guards, i + 1);
      if (verdict) {
        this.fail(ctx, verdict);
        return undefined;
      }
    }
    if (!service) {
      this.plane.noteUnrouted(ctx.record.host, ctx.url);
      this.fail(ctx, new VelocityError('NO_ROUTE'));
      return undefined;
    }
    return service;
  }

  private async guardAfter(
    ctx: RequestContext,
    service: ServiceRuntime | undefined,
    verdict: Promise<VelocityError | undefined>,
    guards: readonly Guard[],
    next: number,
  ): Promise<ServiceRuntime | undefined> {
    const error = await verdict;
    if (!error) return this.guard(ctx, service, guards, next);
    this.fail(ctx, error);
    return undefined;
  }

  private async proxy(ctx: RequestContext, routed: ServiceRuntime): Promise<void> {
    const { req, res, record, run } = ctx;
    const service = run ? await run.start(routed, this.plane) : routed;
    if (!service) return;
    record.service = service.name;
    if (speaksHttp2(service)) return proxyHttp2(this.plane, ctx, service, (error) => this.fail(ctx, error));
    const cfg = service.config;
    const method = record.method;
    const now = Date.now();
    service.retryBudget.recordRequest(now);

    const pending = run?.body ?? requestBody(req, cfg.retries.buffer_body, record);
    const body = pending instanceof Promise ? await pending : pending;
    if (body instanceof VelocityError) return this.fail(ctx, body);
    const replayable = !(body && typeof (body as RequestBody).pipe === 'function');
    const idempotent = IDEMPOTENT.has(method);
    const forwarded = requestHeadersForUpstream(req.rawHeaders, ctx.forwardedInfo(this.plane.trustsPeer(req)));
    const headers = run ? run.requestHeaders(forwarded) : forwarded;
    const traceAt = traceHeaderSlot(headers, ctx);
    const path = run ? run.url : ctx.url;
    run?.forwarded(method, path, headers, body);
    const clientRes = run ? run.response() : res;

    const abort = ctx.abort;
    const totalTimer = cfg.timeouts.total > 0 ? setTimeout(abortOnTotalTimeout, cfg.timeouts.total, abort) : undefined;

    const tried = new Set<UpstreamServer>();
    const upstreamStart = performance.now();
    try {
      for (let attempt = 1; ; attempt++) {
        const picked = this.plane.select(service, ctx, tried, abort);
        const lease = picked instanceof Promise ? await picked : picked;
        if (lease instanceof VelocityError) {
          return this.fail(ctx, lease);
        }
        const server = lease.server;
        tried.add(server);
        record.server = server.id;
        this.plane.stickTo(service, server, ctx);
        const mayRetryAfter = attempt < cfg.retries.attempts && replayable && service.hasAvailableServer(tried);
        const perTry = cfg.retries.per_try_timeout > 0 ? setTimeout(abortTryOnTimeout, cfg.retries.per_try_timeout, abort) : undefined;
        const attemptStart = performance.now();
        const span = ctx.trace?.startAttempt();
        if (span && traceAt >= 0) headers[traceAt] = ctx.trace?.traceparent(span) as string;
        let outcome: AttemptOutcome | undefined;
        try {
          outcome = await forwardAttempt(
            this.plane.pools.get(server, this.plane.poolOptions(service)),
            {
              method,
              path,
              headers,
              body,
              timeouts: { responseHeader: cfg.timeouts.response_header, idle: cfg.timeouts.idle },
              retryStatuses: mayRetryAfter && idempotent && service.retryBudget.hasRoom(Date.now()) ? this.plane.retryStatuses(service) : undefined,
              extraResponseHeaders: ctx.responseHeaders,
            },
            clientRes,
            attemptStart,
            abort,
          );
        } finally {
          if (perTry) clearTimeout(perTry);
          lease.end(outcome, performance.now() - attemptStart);
        }
        if (span) ctx.trace?.endAttempt(span, attemptResultOf(server, outcome), method);
        record.upstreamMs = performance.now() - upstreamStart;

        if (outcome.kind === 'response') {
          record.status = outcome.status;
          record.bytesOut = outcome.bytesOut;
          record.upstreamFirstByteMs = outcome.firstByteMs;
          return;
        }
        if (outcome.kind === 'failed' && (outcome.responseStarted || isClientGone(outcome.error))) {
          record.errorCode = outcome.code;
          record.status = res.headersSent ? res.statusCode : 499;
          res.destroy();
          return;
        }
        const safeToResend = outcome.kind === 'retryable-status' || idempotent || (outcome.kind === 'failed' && !outcome.requestSent);
        // Why this failure is not retried, if it is not. The budget is asked last, at the time of the failure,
        // so nothing is spent on a retry refused for another reason (past the total timeout, say).
        record.retryDenied = retryRefusal(safeToResend, attempt < cfg.retries.attempts, replayable, abort.aborted, service, tried);
        if (record.retryDenied) {
          const code = outcome.kind === 'failed' ? outcome.code : statusToCode(outcome.status);
          return this.fail(ctx, new VelocityError(code, undefined, { cause: outcome.kind === 'failed' ? outcome.error : undefined }));
        }
        record.retries++;
        const cap = cappedBackoff(cfg.retries.backoff.base, cfg.retries.backoff.max, attempt - 1);
        await sleep(Math.random() * cap);
        if (abort.aborted) return this.fail(ctx, new VelocityError('UPSTREAM_TIMEOUT'));
      }
    } finally {
      if (totalTimer) clearTimeout(totalTimer);
    }
  }

  private fail(ctx: RequestContext, error: VelocityError): void {
    ctx.record.errorCode = error.code;
    if (isGrpcRequest(ctx.req)) {
      // gRPC clients get a status they understand, not a text page.
      ctx.record.status = 200;
      ctx.record.grpcMethod ??= ctx.url.split('?')[0];
      ctx.record.grpcStatus = respondGrpcError(ctx.res, error, ctx.responseHeaders, ctx.req.headers['content-type']);
      return;
    }
    ctx.record.status = error.status;
    // Through the route's middleware when it has some: error pages, and response rules (CORS, security headers) on errors too.
    if (ctx.run) return void ctx.run.answerError(error, ctx.responseHeaders);
    respondWithError(ctx.res, error, ctx.responseHeaders);
  }

  /** Called when the response closed and when the data path is done; the second call records the request. */
  private finish(ctx: RequestContext): void {
    if (--ctx.partsLeft > 0) return;
    const { record } = ctx;
    // Measured last, so no part of the record (upstreamMs, measured when a try settled) can exceed it.
    record.totalMs = performance.now() - ctx.started;
    if (record.status === 0) record.status = ctx.res.headersSent ? ctx.res.statusCode : 499;
    ctx.trace?.end(record);
    this.plane.emit(record);
  }
}

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
