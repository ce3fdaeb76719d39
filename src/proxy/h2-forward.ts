/**
 * Requests to services whose servers speak HTTP/2 (h2c://, or https:// with
 * `http2: true`): each request — each gRPC call — is balanced on its own and sent
 * as one stream on a pooled connection, with backpressure both ways and trailers
 * passed through. Retries: a call the server never processed (connect failure,
 * GOAWAY above its last-stream-id, REFUSED_STREAM) is sent again; a gRPC call
 * answered UNAVAILABLE before any message is retried only for methods the config
 * marks safe; plain HTTP follows the service's retry_on rules for idempotent methods.
 */
import type { Buffer } from 'node:buffer';
import type { ClientHttp2Stream, Http2ServerResponse, IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { type ErrorCode, VelocityError } from '../errors.ts';
import { ResponseDecorator } from '../middleware/response-decorator.ts';
import { http2 } from '../node-http2.ts';
import type { AttemptSpan } from '../observe/tracing.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { type AttemptOutcome, clientGoneError, IDEMPOTENT_METHODS, isClientGone } from '../upstream/attempt.ts';
import type { DeadlineSweep, Expiring } from '../upstream/deadline-sweep.ts';
import type { H2Connection, H2ServerPool, H2StreamError } from '../upstream/h2-pool.ts';
import type { Lease } from '../upstream/lease.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import type { StatusSet } from '../upstream/status-set.ts';
import { type FailedOutcome, type ForwardingOwner, RequestLoop } from './attempt-loop.ts';
import type { ClientResponse } from './client-response.ts';
import type { RequestContext } from './context.ts';
import { classifyUpstreamError } from './forwarder.ts';
import { encodeGrpcMessage, flatHeaders, formatGrpcTimeout, GRPC, headerObject, isGrpcRequest, methodMatches, parseGrpcTimeout, sendStatusTrailers } from './grpc.ts';
import { type GrpcWebMode, GrpcWebResponse, grpcWebMode, grpcWebRequestBody, toGrpcRequestHeaders } from './grpc-web.ts';
import { HOP_BY_HOP, SET_BY_PROXY } from './headers.ts';
import type { ProxyResponse } from './proxy-message.ts';
import { ReplayableBody } from './replayable-body.ts';
import type { AbortableTry, RequestAbort } from './request-abort.ts';
import { hasRequestBody } from './request-body.ts';

/** What one HTTP/2 try came to, as the loop and the lease see it. */
interface AttemptPlan {
  headers: OutgoingHttpHeaders;
  body: ReplayableBody | undefined;
  grpc: boolean;
  /** gRPC: UNAVAILABLE (trailers-only) may be retried. Plain HTTP: these statuses may be retried. */
  retryUnavailable: boolean;
  retryStatuses: StatusSet | undefined;
  responseHeaderTimeout: number;
  idleTimeout: number;
  extraResponseHeaders: [string, string | string[]][] | undefined;
}

/** Whether requests to this service go over HTTP/2. */
export function speaksHttp2(service: ServiceRuntime): boolean {
  return service.servers.length > 0 && (service.servers[0] as UpstreamServer).http2;
}

/**
 * One request to an HTTP/2 service, over the attempt loop: each try is one stream on a pooled
 * connection. A try its server never processed goes again at once (resendUnprocessed); the deadline
 * is the client's grpc-timeout (or the service's default for calls), bounded by timeouts.total, and
 * each try tells the server what is left of it.
 */
export class H2Forwarding extends RequestLoop {
  private readonly grpc: boolean;
  private readonly web: GrpcWebMode | undefined;
  private plan: AttemptPlan | undefined = undefined;
  private out: ResponseSink | undefined = undefined;
  private h2client: ServerHttp2Stream | undefined = undefined;
  /** performance.now() value of the call's deadline (0: none), sent to the server as grpc-timeout. */
  private callDeadline = 0;
  /** A gRPC-Web text body that is not base64 ends the call as INVALID_ARGUMENT. */
  private badBody: VelocityError | undefined = undefined;
  private current: H2Try | undefined = undefined;
  private span: AttemptSpan | undefined = undefined;

  constructor(plane: DataPlane, ctx: RequestContext, owner: ForwardingOwner) {
    super(plane, ctx, owner);
    this.web = grpcWebMode(ctx.req.headers);
    this.grpc = isGrpcRequest(ctx.req);
  }

  start(service: ServiceRuntime): void {
    try {
      this.begin(service);
    } catch (err) {
      this.crash(err);
    }
  }

  private begin(service: ServiceRuntime): void {
    const { ctx, plane, web, grpc } = this;
    const { req, res, record } = ctx;
    const cfg = service.config;
    if (grpc) record.grpcMethod = ctx.url.split('?')[0];
    this.serve(service, record.time);
    const limits = [grpc ? (parseGrpcTimeout(req.headers['grpc-timeout']) ?? cfg.grpc.default_timeout) : 0, cfg.timeouts.total].filter((ms) => ms > 0);
    const budgetMs = limits.length > 0 ? Math.min(...limits) : 0;
    if (budgetMs > 0) this.callDeadline = performance.now() + budgetMs;

    const run = ctx.run;
    // No body stream for a request without a body (a GET): one per request showed in the allocation count.
    const hasBody = run?.body ? run.body.length > 0 : hasRequestBody(req);
    // A body the route's middleware read into memory goes as read.
    const source = run?.body
      ? Readable.from([run.body])
      : web
        ? grpcWebRequestBody(req, web, (err) => this.abort.abort((this.badBody = new VelocityError('BAD_REQUEST', err.message))))
        : req;
    const body = hasBody ? new ReplayableBody(source, cfg.retries.buffer_body) : undefined;
    // The answer goes through the route's response middleware (when it has some), and gRPC-Web's translation before them.
    const decorated = run ? run.response() : res;
    const viaMiddleware = decorated !== res;
    this.out = web ? new GrpcWebResponse(decorated, web) : viaMiddleware ? new TrailersBeside(decorated, res) : res;
    this.h2client = web || viaMiddleware ? undefined : clientStream(res);
    const method = record.method;
    this.plan = {
      headers: upstreamHeaders(ctx, plane, web),
      body,
      grpc,
      retryUnavailable: grpc && methodMatches(record.grpcMethod ?? '', cfg.grpc.retry_on_unavailable),
      retryStatuses: !grpc && IDEMPOTENT_METHODS.has(method) ? service.retryStatuses : undefined,
      responseHeaderTimeout: cfg.timeouts.response_header,
      idleTimeout: cfg.timeouts.idle,
      extraResponseHeaders: ctx.responseHeaders,
    };
    this.startTries(budgetMs);
  }

  protected tryOn(lease: Lease): void {
    const { ctx, plane } = this;
    const plan = this.plan as AttemptPlan;
    const service = this.service as ServiceRuntime;
    const server = lease.server;
    ctx.record.server = server.id;
    plane.stickTo(service, server, ctx);
    const span = ctx.trace?.startAttempt();
    this.span = span;
    if (span) setTraceHeaders(plan.headers, ctx, span);
    if (this.callDeadline > 0) plan.headers['grpc-timeout'] = formatGrpcTimeout(this.callDeadline - performance.now());
    const attempt = new H2Try(this, plan, this.out as ResponseSink, this.h2client, performance.now(), plane.pools.sweep);
    this.current = attempt;
    attempt.start(plane.h2.get(server, service.h2Options()), this.abort);
  }

  /** Whether an answer with this status (and gRPC status) is held back for another try. */
  holdsBack(status: number, grpcStatus: number | undefined, endStream: boolean): boolean {
    const plan = this.plan as AttemptPlan;
    const retryable = plan.grpc ? endStream && grpcStatus === GRPC.UNAVAILABLE && plan.retryUnavailable : plan.retryStatuses?.has(status) === true;
    if (!retryable) return false;
    this.replayable = plan.body?.replayable ?? true;
    return this.mayTryAgain();
  }

  /** The try ended (`grpcStatus`: the call's, when the server sent one): what it came to, in the loop's words. */
  h2TrySettled(outcome: H2Outcome, grpcStatus: number | undefined): void {
    this.replayable = this.plan?.body?.replayable ?? true;
    // A stream refused by GOAWAY or REFUSED_STREAM is the server shedding connections in order, not failing.
    if (outcome.kind === 'failed' && outcome.unprocessed && !outcome.connectFailed) return void this.resendUnprocessed(asFailed(outcome));
    this.attemptSettled(asAttemptOutcome(outcome, grpcStatus));
  }

  protected mayResend(): boolean {
    const plan = this.plan as AttemptPlan;
    return plan.grpc ? plan.retryUnavailable : IDEMPOTENT_METHODS.has(this.ctx.record.method);
  }

  protected tryEnded(lease: Lease, outcome: AttemptOutcome | undefined, at: number): void {
    const { ctx } = this;
    ctx.record.upstreamMs = at - this.upstreamStart;
    if (this.span && ctx.trace) ctx.trace.endAttempt(this.span, attemptResult(lease.server, outcome, this.current?.grpcStatus), ctx.record.method);
  }

  protected answered(outcome: Extract<AttemptOutcome, { kind: 'response' }>, _lease: Lease, at: number): void {
    const { record } = this.ctx;
    const attempt = this.current as H2Try;
    record.status = attempt.status;
    record.bytesOut = outcome.bytesOut;
    record.upstreamFirstByteMs = outcome.firstByteMs;
    if (attempt.grpcStatus !== undefined) record.grpcStatus = attempt.grpcStatus;
    this.finish(undefined, at);
  }

  protected cutShort(outcome: FailedOutcome): void {
    const { record, res } = this.ctx;
    record.errorCode = outcome.code;
    record.status = res.headersSent ? res.statusCode : 499;
    if (this.grpc && outcome.responseStarted) record.grpcStatus = outcome.code === 'UPSTREAM_TIMEOUT' ? GRPC.DEADLINE_EXCEEDED : GRPC.UNAVAILABLE;
  }

  protected override giveUpError(outcome: FailedOutcome | Extract<AttemptOutcome, { kind: 'retryable-status' }>, server: UpstreamServer): VelocityError {
    if (this.badBody) return this.badBody;
    if (outcome.kind === 'retryable-status') {
      // The server's own answer (e.g. UNAVAILABLE, 503) stands: nothing else could take the call.
      return new VelocityError(outcome.status === 504 ? 'UPSTREAM_TIMEOUT' : 'NO_HEALTHY_SERVER', `no other server could take the call after ${server.id} answered unavailable`);
    }
    const code = this.timedOut() ? 'UPSTREAM_TIMEOUT' : outcome.code;
    return new VelocityError(code, undefined, { cause: outcome.error });
  }

  protected override pickRefused(error: VelocityError): VelocityError {
    return this.badBody ?? (this.timedOut() ? new VelocityError('UPSTREAM_TIMEOUT') : error);
  }

  /** Aborted, and not because the client left: the deadline passed. */
  private timedOut(): boolean {
    return this.abort.aborted && !isClientGone(this.abort.reason);
  }

  protected override done(error: VelocityError | undefined, at?: number): void {
    this.plan?.body?.detach();
    super.done(error, at);
  }
}

/** What one HTTP/2 try came to. */
type H2Outcome =
  | { kind: 'response'; status: number; bytesOut: number; firstByteMs: number }
  | { kind: 'retryable'; status: number; firstByteMs: number }
  | { kind: 'failed'; code: ErrorCode; error: Error; responseStarted: boolean; unprocessed: boolean; connectFailed: boolean };

function asFailed(outcome: Extract<H2Outcome, { kind: 'failed' }>): FailedOutcome {
  return { kind: 'failed', code: outcome.code, error: outcome.error, responseStarted: outcome.responseStarted, requestSent: !outcome.unprocessed };
}

/** The try as the loop, passive health and the breaker judge it; a gRPC UNAVAILABLE counts like a 503 from an HTTP server. */
function asAttemptOutcome(outcome: H2Outcome, grpcStatus: number | undefined): AttemptOutcome {
  if (outcome.kind === 'failed') return asFailed(outcome);
  if (outcome.kind === 'retryable') return { kind: 'retryable-status', status: grpcStatus === GRPC.UNAVAILABLE ? 503 : outcome.status, firstByteMs: outcome.firstByteMs };
  return { kind: 'response', status: grpcStatus === GRPC.UNAVAILABLE ? 503 : outcome.status, bytesOut: outcome.bytesOut, firstByteMs: outcome.firstByteMs, complete: true };
}

function attemptResult(server: UpstreamServer, outcome: AttemptOutcome | undefined, grpcStatus: number | undefined) {
  if (outcome === undefined || outcome.kind === 'failed') return { server: server.id, errorCode: outcome?.code ?? 'UPSTREAM_RESET' };
  return { server: server.id, status: outcome.status, grpcStatus, firstByteMs: outcome.firstByteMs };
}

/** Request headers for the server: the client's, less hop-by-hop and forwarding ones, plus Velocity's. */
function upstreamHeaders(ctx: RequestContext, plane: DataPlane, web: GrpcWebMode | undefined): OutgoingHttpHeaders {
  const { req } = ctx;
  const { host, requestId } = ctx.record;
  let out: OutgoingHttpHeaders = {};
  const incoming = req.headers;
  for (const name in incoming) {
    if (name.charCodeAt(0) === 58 || name === 'host' || SET_BY_PROXY.has(name) || name === 'traceparent' || name === 'tracestate') continue;
    if (HOP_BY_HOP.has(name)) {
      // gRPC needs "te: trailers" end to end; every other hop-by-hop header stops here.
      if (name === 'te' && incoming.te === 'trailers') out.te = 'trailers';
      continue;
    }
    out[name] = incoming[name];
  }
  out['x-forwarded-for'] = ctx.forwardedFor(plane.trustsPeer(req));
  out['x-forwarded-proto'] = ctx.proto;
  out['x-forwarded-host'] = host;
  out['x-request-id'] = requestId;
  if (web) toGrpcRequestHeaders(out, web);
  // The route's header rules (and a body read into memory, sent with its length).
  if (ctx.run) out = headerObject(ctx.run.requestHeaders(flatHeaders(out)));
  return { ':method': ctx.method, ':path': ctx.run ? ctx.run.url : ctx.url, ':authority': host, ...out };
}

function setTraceHeaders(headers: OutgoingHttpHeaders, ctx: RequestContext, span: AttemptSpan): void {
  const trace = ctx.trace;
  if (!trace || !ctx.propagateTrace) return;
  headers.traceparent = trace.traceparent(span);
  if (trace.tracestate) headers.tracestate = trace.tracestate;
}

/** Response headers for the client: the server's less pseudo and hop-by-hop ones. */
function clientHeaders(headers: IncomingHttpHeaders, extra: [string, string | string[]][] | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 || HOP_BY_HOP.has(name)) continue;
    out[name] = headers[name];
  }
  if (extra) for (const [name, value] of extra) out[name] = value;
  return out;
}

/**
 * The route's response middleware in front of the client's response; trailers
 * (gRPC's status) go straight to the client's response, which sends them after
 * the body on HTTP/2.
 */
class TrailersBeside extends ResponseDecorator {
  private readonly client: ProxyResponse;
  constructor(decorated: ClientResponse, client: ProxyResponse) {
    super(decorated);
    this.client = client;
  }
  addTrailers(trailers: Record<string, string | string[] | undefined>): void {
    if (typeof this.client.addTrailers === 'function') this.client.addTrailers(trailers as Record<string, string>);
  }
}

/** The client's HTTP/2 stream when it spoke HTTP/2 (undefined for HTTP/1.1 clients). */
function clientStream(res: ProxyResponse): ServerHttp2Stream | undefined {
  const stream = (res as unknown as Partial<Http2ServerResponse>).stream;
  return stream && typeof stream.respond === 'function' ? stream : undefined;
}

/**
 * Where an answer goes: the client's response (node's HTTP/2 compatibility response or
 * Velocity's HTTP/1.1 one), or a gRPC-Web translation of it. Trailers only where the
 * response can carry them (HTTP/2, or gRPC-Web's closing frame).
 */
type ResponseSink = ClientResponse & { addTrailers?(trailers: Record<string, string | string[] | undefined>): void };

/**
 * One try: one stream to one server, its answer streamed to the client (straight onto the client's
 * HTTP/2 stream when it has one). Its response-header and idle timeouts are checked by the thread's
 * deadline sweep; the request's abort (client gone, total or per-try timeout) reaches it as the try in flight.
 */
class H2Try implements AbortableTry, Expiring {
  private readonly loop: H2Forwarding;
  private readonly plan: AttemptPlan;
  private readonly res: ResponseSink;
  private readonly h2client: ServerHttp2Stream | undefined;
  private readonly started: number;
  private readonly sweep: DeadlineSweep;
  private control: RequestAbort | undefined = undefined;
  private upstream: ClientHttp2Stream | undefined = undefined;
  private settled = false;
  private responseStarted = false;
  private bytesOut = 0;
  private firstByteMs = 0;
  status = 0;
  grpcStatus: number | undefined = undefined;
  private trailers: IncomingHttpHeaders | undefined = undefined;
  /** The response-header deadline, then (plain HTTP) the idle one, pushed on by each chunk (Expiring). */
  deadline = 0;
  private swept = false;

  constructor(loop: H2Forwarding, plan: AttemptPlan, res: ResponseSink, h2client: ServerHttp2Stream | undefined, started: number, sweep: DeadlineSweep) {
    this.loop = loop;
    this.plan = plan;
    this.res = res;
    this.h2client = h2client;
    this.started = started;
    this.sweep = sweep;
  }

  start(pool: H2ServerPool, control: RequestAbort): void {
    if (control.reason) return void this.abort(control.reason);
    this.control = control;
    control.startTry(this);
    const connection = pool.connection();
    if (!(connection instanceof Promise)) return void this.opened(connection);
    connection.then(
      (up) => this.opened(up),
      (err: H2StreamError) => this.failWith(err, true, true),
    );
  }

  private settle(outcome: H2Outcome): void {
    if (this.settled) return;
    this.settled = true;
    if (this.swept) this.sweep.delete(this);
    this.control?.endTry(this);
    this.plan.body?.detach();
    this.loop.h2TrySettled(outcome, this.grpcStatus);
  }

  private failWith(error: Error & { code?: string }, unprocessed: boolean, connectFailed = false): void {
    if (this.settled) return;
    const { res, h2client, responseStarted } = this;
    const code = classifyUpstreamError(error);
    const gs = code === 'UPSTREAM_TIMEOUT' ? GRPC.DEADLINE_EXCEEDED : GRPC.UNAVAILABLE;
    const message = encodeGrpcMessage(`upstream ${code === 'UPSTREAM_TIMEOUT' ? 'deadline exceeded' : 'connection lost'} (${code})`);
    // The client sees a gRPC status, not a reset: UNAVAILABLE (or DEADLINE_EXCEEDED) in trailers.
    if (responseStarted && this.plan.grpc && h2client && !h2client.closed) sendStatusTrailers(res as unknown as ProxyResponse, gs, message);
    else if (responseStarted && this.plan.grpc && res.addTrailers && !res.destroyed) {
      res.addTrailers({ 'grpc-status': String(gs), 'grpc-message': message });
      res.end();
    } else if (responseStarted) res.destroy();
    this.settle({ kind: 'failed', code, error, responseStarted, unprocessed: unprocessed && !responseStarted, connectFailed });
  }

  /** The client went away, or a timeout of the request passed. */
  abort(reason: Error & { code?: string }): void {
    this.upstream?.close(http2().constants.NGHTTP2_CANCEL);
    this.failWith(reason, false);
  }

  /** The response header or (plain HTTP) the next chunk did not come in time. */
  expire(): void {
    const what = this.responseStarted ? 'server idle too long' : 'no response header in time';
    this.upstream?.close(http2().constants.NGHTTP2_CANCEL);
    this.failWith(Object.assign(new Error(what), { code: 'VELOCITY_ATTEMPT_TIMEOUT' }), false);
  }

  private opened(connection: H2Connection): void {
    if (this.settled) {
      connection.active--;
      return;
    }
    let stream: ClientHttp2Stream;
    try {
      stream = connection.open(this.plan.headers, this.plan.body === undefined);
    } catch (err) {
      return void this.failWith(err as H2StreamError, true);
    }
    this.upstream = stream;
    this.deadline = performance.now() + this.plan.responseHeaderTimeout;
    this.swept = true;
    this.sweep.add(this);
    if (this.plan.body) this.plan.body.attach(stream);
    stream.once('response', (headers, flags) => this.onResponse(stream, headers, flags));
    stream.on('data', (chunk: Buffer) => this.onData(stream, chunk));
    stream.once('trailers', (t) => {
      this.trailers = t;
      if (t['grpc-status'] !== undefined) this.grpcStatus = Number(t['grpc-status']);
    });
    stream.once('end', () => this.onEnd());
    stream.once('close', () => {
      if (this.settled) return;
      const rst = stream.rstCode;
      const err = Object.assign(new Error(`stream closed by the server (RST_STREAM ${rst ?? 'none'})`), { code: 'ECONNRESET' });
      this.failWith(err, connection.neverProcessed(stream));
    });
    stream.on('error', () => undefined);
  }

  private onResponse(stream: ClientHttp2Stream, headers: IncomingHttpHeaders, flags: number): void {
    const { plan, res, h2client } = this;
    const status = Number(headers[':status']);
    this.status = status;
    const now = performance.now();
    this.firstByteMs = now - this.started;
    // Plain HTTP: the server may be idle this long between chunks. gRPC streams may be silent for long.
    this.deadline = plan.grpc ? 0 : now + plan.idleTimeout;
    const endStream = (flags & http2().constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    const gs = headers['grpc-status'];
    if (gs !== undefined) this.grpcStatus = Number(gs);
    if (this.loop.holdsBack(status, this.grpcStatus, endStream)) {
      stream.close(http2().constants.NGHTTP2_CANCEL);
      return void this.settle({ kind: 'retryable', status, firstByteMs: this.firstByteMs });
    }
    if (res.destroyed || h2client?.closed) {
      stream.close(http2().constants.NGHTTP2_CANCEL);
      return void this.failWith(clientGoneError(), false);
    }
    const out = clientHeaders(headers, plan.extraResponseHeaders);
    if (h2client) {
      const grpcResponse = String(headers['content-type'] ?? '').startsWith('application/grpc');
      h2client.respond({ ':status': status, ...out }, { endStream, waitForTrailers: !endStream && (grpcResponse || headers.trailer !== undefined) });
    } else {
      res.writeHead(status, undefined, flatHeaders(out));
      if (endStream) res.end();
    }
    this.responseStarted = true;
    if (endStream) this.settle(this.response());
  }

  private onData(stream: ClientHttp2Stream, chunk: Buffer): void {
    if (!this.responseStarted) return;
    if (this.deadline !== 0) this.deadline = performance.now() + this.plan.idleTimeout;
    this.bytesOut += chunk.length;
    const h2client = this.h2client;
    const ok = h2client ? h2client.write(chunk) : this.res.write(chunk);
    if (!ok) {
      stream.pause();
      (h2client ?? this.res).once('drain', () => stream.resume());
    }
  }

  private onEnd(): void {
    if (!this.responseStarted || this.settled) return;
    const { trailers, h2client, res } = this;
    if (this.plan.grpc && trailers === undefined) {
      // A call without its status: the connection was lost (a server killed mid-stream ends this way).
      return void this.failWith(Object.assign(new Error('the server ended the call without a grpc-status'), { code: 'ECONNRESET' }), false);
    }
    if (h2client) {
      if (!h2client.closed) {
        // The compatibility response sends its trailers when the stream asks for them (waitForTrailers).
        if (trailers) res.addTrailers?.(clientHeaders(trailers, undefined) as Record<string, string>);
        h2client.end();
      }
    } else {
      if (trailers) res.addTrailers?.(clientHeaders(trailers, undefined) as Record<string, string>);
      res.end();
    }
    this.settle(this.response());
  }

  private response(): H2Outcome {
    return { kind: 'response', status: this.status, bytesOut: this.bytesOut, firstByteMs: this.firstByteMs };
  }
}
