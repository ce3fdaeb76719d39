/**
 * The HTTP data path for one request: route → guards → forwarding (middleware, select,
 * forward, retries; forwarding.ts), and one record to observers at the end. Never throws to the server.
 */
import type { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { VelocityError } from '../errors.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { clientGoneError } from '../upstream/attempt.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import type { ForwardingOwner } from './attempt-loop.ts';
import { type Guard, RequestContext } from './context.ts';
import { Forwarding } from './forwarding.ts';
import { isGrpcRequest, respondGrpcError } from './grpc.ts';
import type { UnderscoreHeaders } from './header-names.ts';
import { MiddlewareRun } from './middleware-run.ts';
import type { ProxyRequest, ProxyResponse } from './proxy-message.ts';
import { checkRequestHead } from './request-head.ts';
import { respondWithError } from './respond.ts';
import { isWebSocketUpgrade, proxyWebSocket, TunnelSet } from './websocket.ts';

export class RequestHandler implements ForwardingOwner {
  private readonly plane: DataPlane;
  private readonly proto: 'http' | 'https';
  private readonly underscores: UnderscoreHeaders;
  /** client.abort_on_close: a client's FIN before its answer started cancels the request (upgrades too). */
  private readonly abortOnClose: boolean;

  constructor(plane: DataPlane, proto: 'http' | 'https', underscores: UnderscoreHeaders, abortOnClose = true) {
    this.plane = plane;
    this.proto = proto;
    this.underscores = underscores;
    this.abortOnClose = abortOnClose;
  }

  /**
   * HTTP/2 sessions that sent a refused head: their later streams are refused too, never forwarded. An
   * HTTP/1.1 connection needs no entry (nor the lookup on every request): it serves one request at a time
   * and closes after a refused one (keep-alive off), dropping whatever was pipelined behind it.
   */
  private readonly refused = new WeakSet<object>();

  readonly handle = (req: ProxyRequest, res: ProxyResponse): void => {
    const http2 = req.httpVersionMajor === 2;
    const headProblem =
      http2 && this.refused.has(req.socket) ? new VelocityError('BAD_REQUEST', 'an earlier request on this connection was refused') : checkRequestHead(req, this.underscores);
    const ctx = new RequestContext(req, res, this.plane.clientIp(req), this.proto, this.plane.tracer, this.responseClosed);
    if (headProblem) {
      if (http2) this.refused.add(req.socket);
      res.shouldKeepAlive = false;
      this.refuse(ctx, headProblem);
      return;
    }
    void this.serve(ctx);
  };

  /**
   * The request path for one request, recorded at the end. Synchronous until a step has to wait
   * (a guard, middleware, the queue): a promise, even of a ready value, costs a microtask turn.
   */
  private serve(ctx: RequestContext): void {
    let admitted: ServiceRuntime | undefined | Promise<ServiceRuntime | undefined>;
    try {
      this.watch(ctx);
      admitted = this.admit(ctx);
    } catch (err) {
      return void this.crash(ctx, err);
    }
    if (admitted instanceof Promise) this.forwardWhenAdmitted(ctx, admitted);
    else this.forward(ctx, admitted);
  }

  /** serve()'s wait for a guard or middleware: apart from it, which would otherwise allocate these closures' context every time. */
  private forwardWhenAdmitted(ctx: RequestContext, admitted: Promise<ServiceRuntime | undefined>): void {
    admitted.then(
      (service) => this.forward(ctx, service),
      (err: unknown) => this.crash(ctx, err),
    );
  }

  /** Hands an admitted request to its forwarding, which ends the data path (also when it fails). */
  private forward(ctx: RequestContext, service: ServiceRuntime | undefined): void {
    if (service) new Forwarding(this.plane, ctx, this).start(service);
    else this.pathDone(ctx);
  }

  private crash(ctx: RequestContext, err: unknown): void {
    this.plane.log.error({ err, requestId: ctx.record.requestId }, 'unexpected error on the data path');
    this.fail(ctx, new VelocityError('INTERNAL'));
    this.pathDone(ctx);
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
    const error = await proxyWebSocket(this.plane, ctx, service, socket, head, this.tunnels, this.abortOnClose);
    if (error) this.fail(ctx, error);
  }

  private watch(ctx: RequestContext): void {
    const { res } = ctx;
    // The HTTP/1.1 server tells the context itself; an HTTP/2 response, a listener.
    if (res.watchClose) res.watchClose(ctx);
    else this.listenForClose(ctx);
    // While shutting down, finish what arrives on open connections but close them after.
    if (this.plane.draining) res.shouldKeepAlive = false;
  }

  /** watch() for a response without watchClose: apart, or every watch() would allocate this closure's context. */
  private listenForClose(ctx: RequestContext): void {
    ctx.res.on('close', () => this.responseClosed(ctx));
  }

  /** The response of `ctx` closed. One handler for both: a client that leaves before its response ended aborts the try in flight. */
  private readonly responseClosed = (ctx: RequestContext): void => {
    if (!ctx.res.writableFinished) ctx.abort.abort(clientGoneError());
    this.finish(ctx);
  };

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

  /** Answers `error` to the client and records it. */
  fail(ctx: RequestContext, error: VelocityError): void {
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

  /** The data path is done with the request (the forwarding tells, once). */
  pathDone(ctx: RequestContext, at?: number): void {
    this.finish(ctx, at);
  }

  /**
   * Called when the response closed and when the data path is done; the second call records the request.
   * `at`, a clock reading the caller took just before (when the try settled), spares reading it again.
   */
  private finish(ctx: RequestContext, at?: number): void {
    if (--ctx.partsLeft > 0) return;
    const { record } = ctx;
    // Measured last, so no part of the record (upstreamMs, measured when a try settled) can exceed it.
    record.totalMs = (at ?? performance.now()) - ctx.started;
    if (record.status === 0) record.status = ctx.res.headersSent ? ctx.res.statusCode : 499;
    ctx.trace?.end(record);
    this.plane.emit(record);
  }
}
