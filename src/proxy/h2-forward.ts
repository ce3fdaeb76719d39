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
import { setTimeout as sleep } from 'node:timers/promises';
import { cappedBackoff } from '../backoff.ts';
import { type ErrorCode, VelocityError } from '../errors.ts';
import { ResponseDecorator } from '../middleware/response-decorator.ts';
import { http2 } from '../node-http2.ts';
import type { AttemptSpan } from '../observe/tracing.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { type AttemptOutcome, clientGoneError, IDEMPOTENT_METHODS, isClientGone } from '../upstream/attempt.ts';
import type { H2ServerPool, H2StreamError } from '../upstream/h2-pool.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import type { StatusSet } from '../upstream/status-set.ts';
import type { ClientResponse } from './client-response.ts';
import type { RequestContext } from './context.ts';
import { classifyUpstreamError } from './forwarder.ts';
import { encodeGrpcMessage, flatHeaders, formatGrpcTimeout, GRPC, headerObject, isGrpcRequest, methodMatches, parseGrpcTimeout, sendStatusTrailers } from './grpc.ts';
import { type GrpcWebMode, GrpcWebResponse, grpcWebMode, grpcWebRequestBody, toGrpcRequestHeaders } from './grpc-web.ts';
import { HOP_BY_HOP, SET_BY_PROXY } from './headers.ts';
import type { ProxyResponse } from './proxy-message.ts';
import { ReplayableBody } from './replayable-body.ts';

/** What one HTTP/2 attempt came to. */
type H2Outcome =
  | { kind: 'response'; status: number; grpcStatus: number | undefined; bytesOut: number; firstByteMs: number }
  | { kind: 'retryable'; status: number; grpcStatus: number | undefined; firstByteMs: number }
  | { kind: 'failed'; code: ErrorCode; error: Error; responseStarted: boolean; unprocessed: boolean; connectFailed: boolean };

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
 * Proxies one request to an HTTP/2 service. `fail` answers with Velocity's own
 * error (as a gRPC status for gRPC calls).
 */
export async function proxyHttp2(plane: DataPlane, ctx: RequestContext, service: ServiceRuntime, fail: (error: VelocityError) => void): Promise<void> {
  const { req, res, record } = ctx;
  const cfg = service.config;
  const web = grpcWebMode(req.headers);
  const grpc = isGrpcRequest(req);
  if (grpc) record.grpcMethod = ctx.url.split('?')[0];
  service.retryBudget.recordRequest(Date.now());

  // The deadline: the client's grpc-timeout (or the service's default for calls), bounded by timeouts.total.
  const limits = [grpc ? (parseGrpcTimeout(req.headers['grpc-timeout']) ?? cfg.grpc.default_timeout) : 0, cfg.timeouts.total].filter((ms) => ms > 0);
  const budgetMs = limits.length > 0 ? Math.min(...limits) : 0;
  const deadline = budgetMs > 0 ? performance.now() + budgetMs : 0;
  const abort = new AbortController();
  const deadlineTimer = budgetMs > 0 ? setTimeout(() => abort.abort(Object.assign(new Error('deadline exceeded'), { code: 'VELOCITY_ATTEMPT_TIMEOUT' })), budgetMs) : undefined;
  const onClientGone = () => {
    if (!res.writableFinished) abort.abort(clientGoneError());
  };
  res.on('close', onClientGone);

  const hasBody = !(req as unknown as { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders && req.headers['content-length'] !== '0';
  // A gRPC-Web text body that is not base64 ends the call as INVALID_ARGUMENT.
  let badBody: VelocityError | undefined;
  const run = ctx.run;
  // A body the route's middleware read into memory goes as read.
  const source = run?.body ? Readable.from([run.body]) : web ? grpcWebRequestBody(req, web, (err) => abort.abort((badBody = new VelocityError('BAD_REQUEST', err.message)))) : req;
  const body = hasBody ? new ReplayableBody(source, cfg.retries.buffer_body) : undefined;
  // The answer goes through the route's response middleware (when it has some), and gRPC-Web's translation before them.
  const decorated = run ? run.response() : res;
  const viaMiddleware = decorated !== res;
  const out: ResponseSink = web ? new GrpcWebResponse(decorated, web) : viaMiddleware ? new TrailersBeside(decorated, res) : res;
  const method = record.method;
  const plan: AttemptPlan = {
    headers: upstreamHeaders(ctx, plane, web),
    body,
    grpc,
    retryUnavailable: grpc && methodMatches(record.grpcMethod ?? '', cfg.grpc.retry_on_unavailable),
    retryStatuses: !grpc && IDEMPOTENT_METHODS.has(method) ? service.retryStatuses : undefined,
    responseHeaderTimeout: cfg.timeouts.response_header,
    idleTimeout: cfg.timeouts.idle,
    extraResponseHeaders: ctx.responseHeaders,
  };

  const tried = new Set<UpstreamServer>();
  const upstreamStart = performance.now();
  // Calls the server never processed are sent again without counting as retries, within a bound.
  let unprocessedResends = 0;
  try {
    for (let attempt = 1; ; ) {
      const picked = plane.select(service, ctx, tried, abort);
      const lease = picked instanceof Promise ? await picked : picked;
      if (lease instanceof VelocityError) return fail(badBody ?? (abort.signal.aborted && !isClientGone(abort.signal.reason) ? new VelocityError('UPSTREAM_TIMEOUT') : lease));
      const server = lease.server;
      record.server = server.id;
      plane.stickTo(service, server, ctx);
      const pool = plane.h2.get(server, service.h2Options());
      const span = ctx.trace?.startAttempt();
      if (span) setTraceHeaders(plan.headers, ctx, span);
      if (deadline > 0) plan.headers['grpc-timeout'] = formatGrpcTimeout(deadline - performance.now());
      const mayRetry = (body === undefined || body.replayable) && service.hasAvailableServer(new Set([...tried, server]));
      const attemptStart = performance.now();
      let outcome: H2Outcome | undefined;
      try {
        outcome = await h2Attempt(pool, plan, out, web || viaMiddleware ? undefined : clientStream(res), attemptStart, abort.signal, mayRetry && attempt < cfg.retries.attempts);
      } finally {
        lease.end(outcome && asAttemptOutcome(outcome), performance.now() - attemptStart);
      }
      record.upstreamMs = performance.now() - upstreamStart;
      if (span && ctx.trace) ctx.trace.endAttempt(span, attemptResult(server, outcome), method);

      if (outcome.kind === 'response') {
        record.status = outcome.status;
        record.bytesOut = outcome.bytesOut;
        record.upstreamFirstByteMs = outcome.firstByteMs;
        if (outcome.grpcStatus !== undefined) record.grpcStatus = outcome.grpcStatus;
        return;
      }
      if (outcome.kind === 'failed' && (outcome.responseStarted || isClientGone(outcome.error))) {
        record.errorCode = outcome.code;
        record.status = res.headersSent ? res.statusCode : 499;
        if (grpc && outcome.responseStarted) record.grpcStatus = outcome.code === 'UPSTREAM_TIMEOUT' ? GRPC.DEADLINE_EXCEEDED : GRPC.UNAVAILABLE;
        return;
      }
      const replayable = body === undefined || body.replayable;
      const unprocessed = outcome.kind === 'failed' && outcome.unprocessed;
      if (unprocessed && !(outcome.kind === 'failed' && outcome.connectFailed)) {
        // GOAWAY or REFUSED_STREAM: the same server may take it on a new connection.
        if (replayable && !abort.signal.aborted && unprocessedResends < cfg.retries.attempts + 2) {
          unprocessedResends++;
          record.retries++;
          continue;
        }
      } else tried.add(server);
      // A call cut before any answer (its server died) is as unavailable as one answered UNAVAILABLE: sent again only when safe.
      const safe = outcome.kind === 'retryable' || unprocessed || (grpc ? plan.retryUnavailable : IDEMPOTENT_METHODS.has(method));
      const retry =
        safe &&
        replayable &&
        attempt < cfg.retries.attempts &&
        !abort.signal.aborted &&
        service.hasAvailableServer(tried) &&
        (unprocessed || service.retryBudget.tryTake(Date.now()));
      if (!retry) {
        if (outcome.kind === 'retryable') {
          // The server's own answer (e.g. UNAVAILABLE, 503) stands: nothing else could take the call.
          return fail(
            new VelocityError(outcome.status === 504 ? 'UPSTREAM_TIMEOUT' : 'NO_HEALTHY_SERVER', `no other server could take the call after ${server.id} answered unavailable`),
          );
        }
        const code = abort.signal.aborted && !isClientGone(abort.signal.reason) ? 'UPSTREAM_TIMEOUT' : outcome.code;
        return fail(badBody ?? new VelocityError(code, undefined, { cause: outcome.error }));
      }
      attempt++;
      record.retries++;
      await sleep(Math.random() * cappedBackoff(cfg.retries.backoff.base, cfg.retries.backoff.max, attempt - 2));
      if (abort.signal.aborted) return fail(badBody ?? new VelocityError('UPSTREAM_TIMEOUT'));
    }
  } finally {
    if (deadlineTimer) clearTimeout(deadlineTimer);
    res.removeListener('close', onClientGone);
    body?.detach();
  }
}

/** The attempt as passive health and the breaker judge it; undefined when it says nothing about the server. */
function asAttemptOutcome(outcome: H2Outcome): AttemptOutcome | undefined {
  // A stream refused by GOAWAY or REFUSED_STREAM is the server shedding connections in order, not failing.
  if (outcome.kind === 'failed' && outcome.unprocessed && !outcome.connectFailed) return undefined;
  if (outcome.kind === 'failed') return { kind: 'failed', code: outcome.code, error: outcome.error, responseStarted: outcome.responseStarted, requestSent: !outcome.unprocessed };
  // A gRPC UNAVAILABLE counts like a 503 from an HTTP server.
  const status = outcome.grpcStatus === GRPC.UNAVAILABLE ? 503 : outcome.status;
  if (outcome.kind === 'retryable') return { kind: 'retryable-status', status, firstByteMs: outcome.firstByteMs };
  return { kind: 'response', status, bytesOut: outcome.bytesOut, firstByteMs: outcome.firstByteMs, complete: true };
}

function attemptResult(server: UpstreamServer, outcome: H2Outcome) {
  if (outcome.kind === 'failed') return { server: server.id, errorCode: outcome.code };
  return { server: server.id, status: outcome.status, grpcStatus: outcome.grpcStatus, firstByteMs: outcome.firstByteMs };
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

/** One stream to one server, its answer streamed to the client (straight onto its HTTP/2 stream when it has one). */
function h2Attempt(
  pool: H2ServerPool,
  plan: AttemptPlan,
  res: ResponseSink,
  h2client: ServerHttp2Stream | undefined,
  started: number,
  signal: AbortSignal,
  mayRetry: boolean,
): Promise<H2Outcome> {
  return new Promise<H2Outcome>((resolve) => {
    let upstream: ClientHttp2Stream | undefined;
    let settled = false;
    let responseStarted = false;
    let bytesOut = 0;
    let firstByteMs = 0;
    let status = 0;
    let grpcStatus: number | undefined;
    let trailers: IncomingHttpHeaders | undefined;
    let headerTimer: NodeJS.Timeout | undefined;

    const settle = (outcome: H2Outcome) => {
      if (settled) return;
      settled = true;
      if (headerTimer) clearTimeout(headerTimer);
      signal.removeEventListener('abort', onAbort);
      plan.body?.detach();
      resolve(outcome);
    };
    const failWith = (error: Error & { code?: string }, unprocessed: boolean, connectFailed = false) => {
      if (settled) return;
      const code = classifyUpstreamError(error);
      const gs = code === 'UPSTREAM_TIMEOUT' ? GRPC.DEADLINE_EXCEEDED : GRPC.UNAVAILABLE;
      const message = encodeGrpcMessage(`upstream ${code === 'UPSTREAM_TIMEOUT' ? 'deadline exceeded' : 'connection lost'} (${code})`);
      // The client sees a gRPC status, not a reset: UNAVAILABLE (or DEADLINE_EXCEEDED) in trailers.
      if (responseStarted && plan.grpc && h2client && !h2client.closed) sendStatusTrailers(res as unknown as ProxyResponse, gs, message);
      else if (responseStarted && plan.grpc && res.addTrailers && !res.destroyed) {
        res.addTrailers({ 'grpc-status': String(gs), 'grpc-message': message });
        res.end();
      } else if (responseStarted) res.destroy();
      settle({ kind: 'failed', code, error, responseStarted, unprocessed: unprocessed && !responseStarted, connectFailed });
    };
    const onAbort = () => {
      const reason = signal.reason instanceof Error ? signal.reason : new Error('aborted');
      upstream?.close(http2().constants.NGHTTP2_CANCEL);
      failWith(reason, false);
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });

    pool.connection().then(
      (connection) => {
        if (settled) {
          connection.active--;
          return;
        }
        let stream: ClientHttp2Stream;
        try {
          stream = connection.open(plan.headers, plan.body === undefined);
        } catch (err) {
          failWith(err as H2StreamError, true);
          return;
        }
        upstream = stream;
        headerTimer = setTimeout(() => {
          stream.close(http2().constants.NGHTTP2_CANCEL);
          failWith(Object.assign(new Error('no response header in time'), { code: 'VELOCITY_ATTEMPT_TIMEOUT' }), false);
        }, plan.responseHeaderTimeout);
        if (!plan.grpc)
          stream.setTimeout(plan.idleTimeout, () => {
            stream.close(http2().constants.NGHTTP2_CANCEL);
            failWith(Object.assign(new Error('server idle too long'), { code: 'VELOCITY_ATTEMPT_TIMEOUT' }), false);
          });
        if (plan.body) plan.body.attach(stream);

        stream.once('response', (headers, flags) => {
          if (headerTimer) clearTimeout(headerTimer);
          status = Number(headers[':status']);
          firstByteMs = performance.now() - started;
          const endStream = (flags & http2().constants.NGHTTP2_FLAG_END_STREAM) !== 0;
          const gs = headers['grpc-status'];
          if (gs !== undefined) grpcStatus = Number(gs);
          const retryable = mayRetry && ((plan.grpc && endStream && grpcStatus === GRPC.UNAVAILABLE && plan.retryUnavailable) || (!plan.grpc && plan.retryStatuses?.has(status)));
          if (retryable) {
            stream.close(http2().constants.NGHTTP2_CANCEL);
            settle({ kind: 'retryable', status, grpcStatus, firstByteMs });
            return;
          }
          if (res.destroyed || h2client?.closed) {
            stream.close(http2().constants.NGHTTP2_CANCEL);
            failWith(clientGoneError(), false);
            return;
          }
          const out = clientHeaders(headers, plan.extraResponseHeaders);
          if (h2client) {
            const grpcResponse = String(headers['content-type'] ?? '').startsWith('application/grpc');
            h2client.respond({ ':status': status, ...out }, { endStream, waitForTrailers: !endStream && (grpcResponse || headers.trailer !== undefined) });
          } else {
            res.writeHead(status, undefined, flatHeaders(out));
            if (endStream) res.end();
          }
          responseStarted = true;
          if (endStream) settle({ kind: 'response', status, grpcStatus, bytesOut, firstByteMs });
        });
        stream.on('data', (chunk: Buffer) => {
          if (!responseStarted) return;
          bytesOut += chunk.length;
          const ok = h2client ? h2client.write(chunk) : res.write(chunk);
          if (!ok) {
            stream.pause();
            (h2client ?? res).once('drain', () => stream.resume());
          }
        });
        stream.once('trailers', (t) => {
          trailers = t;
          if (t['grpc-status'] !== undefined) grpcStatus = Number(t['grpc-status']);
        });
        stream.once('end', () => {
          if (!responseStarted || settled) return;
          if (plan.grpc && trailers === undefined) {
            // A call without its status: the connection was lost (a server killed mid-stream ends this way).
            failWith(Object.assign(new Error('the server ended the call without a grpc-status'), { code: 'ECONNRESET' }), false);
            return;
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
          settle({ kind: 'response', status, grpcStatus, bytesOut, firstByteMs });
        });
        stream.once('close', () => {
          if (settled) return;
          const rst = stream.rstCode;
          const err = Object.assign(new Error(`stream closed by the server (RST_STREAM ${rst ?? 'none'})`), { code: 'ECONNRESET' });
          failWith(err, connection.neverProcessed(stream));
        });
        stream.on('error', () => undefined);
      },
      (err: H2StreamError) => failWith(err, true, true),
    );
  });
}
