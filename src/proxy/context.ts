/**
 * What the steps of the request path share: the per-request context (turned into
 * the access-log record at the end), the Guard interface guards implement, and the
 * rules (client IP, guards) a config sets for every request.
 */
import { performance } from 'node:perf_hooks';
import type { PickRequest } from '../balancer/policy.ts';
import { epochMsAt } from '../clock.ts';
import type { VelocityError } from '../errors.ts';
import { type ClientIpResolver, normalizeIp } from '../guard/client-ip.ts';
import type { RequestRecord } from '../observe/events.ts';
import type { RequestTrace, Tracer } from '../observe/tracing.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import { requestHeadersForUpstream } from './headers.ts';
import type { MiddlewareRun } from './middleware-run.ts';
import type { CloseWatcher, ProxyRequest, ProxyResponse } from './proxy-message.ts';
import { RequestAbort } from './request-abort.ts';
import { newRequestId } from './request-id.ts';

/** Per-request state shared by the steps and turned into the access-log record. */
export class RequestContext implements PickRequest, CloseWatcher {
  readonly started = performance.now();
  /**
   * The record is emitted once both the response has closed and the data path is done with the
   * request: an attempt that settles after the client left still fills in its fields first.
   */
  partsLeft = 2;
  readonly record: RequestRecord;
  private cookies: Map<string, string> | undefined;
  /** Headers steps add to the response (rate-limit headers, sticky cookie). */
  responseHeaders: [string, string | string[]][] | undefined;
  /** The route's middleware for this request; undefined when the route has none. */
  run: MiddlewareRun | undefined;
  /** Stops the request's tries: the client went away, or a timeout passed. */
  readonly abort = new RequestAbort();

  readonly req: ProxyRequest;
  readonly res: ProxyResponse;
  readonly clientIp: string;
  readonly proto: 'http' | 'https';
  /** The request's trace (W3C Trace Context) and whether servers are told about it. */
  readonly trace: RequestTrace | undefined;
  readonly propagateTrace: boolean;
  /** Told when the response closed (through responseClosed, when the response is watched: RequestHandler's watch). */
  private readonly onResponseClosed: ((ctx: RequestContext) => void) | undefined;

  /** `onResponseClosed`: one function for every request of a handler, given the context (not a closure per request). */
  constructor(req: ProxyRequest, res: ProxyResponse, clientIp: string, proto: 'http' | 'https', tracer?: Tracer, onResponseClosed?: (ctx: RequestContext) => void) {
    this.onResponseClosed = onResponseClosed;
    this.req = req;
    this.res = res;
    this.clientIp = clientIp;
    this.proto = proto;
    const headers = req.headers;
    this.trace = tracer?.start(headers, this.started);
    this.propagateTrace = tracer?.propagate ?? false;
    const incomingId = headers['x-request-id'];
    this.record = {
      // The arrival's own reading: one clock read per request, not two.
      time: epochMsAt(this.started),
      requestId: typeof incomingId === 'string' && incomingId.length > 0 && incomingId.length <= 200 ? incomingId : newRequestId(),
      clientIp,
      method: req.method ?? 'GET',
      host: headers.host ?? '',
      path: req.url ?? '/',
      protocol: protocolOf(req),
      status: 0,
      bytesIn: 0,
      bytesOut: 0,
      service: undefined,
      server: undefined,
      upstreamFirstByteMs: undefined,
      upstreamMs: undefined,
      totalMs: 0,
      retries: 0,
      queueWaitMs: 0,
      decision: undefined,
      errorCode: undefined,
      retryDenied: undefined,
      userAgent: headers['user-agent'],
      traceId: this.trace?.traceId,
      spanId: this.trace?.spanId,
    };
  }

  /** CloseWatcher: the response closed. */
  responseClosed(): void {
    this.onResponseClosed?.(this);
  }

  get method(): string {
    return this.record.method;
  }

  get url(): string {
    return this.record.path;
  }

  header(name: string): string | undefined {
    const v = this.req.headers[name.toLowerCase()];
    return Array.isArray(v) ? v.join(', ') : v;
  }

  cookie(name: string): string | undefined {
    if (!this.cookies) {
      this.cookies = new Map();
      const raw = this.req.headers.cookie;
      if (raw) {
        for (const part of raw.split(';')) {
          const eq = part.indexOf('=');
          if (eq > 0) this.cookies.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
        }
      }
    }
    return this.cookies.get(name);
  }

  /**
   * The client's headers as the server is told them (HTTP/1.1 and WebSocket upgrades): hop-by-hop ones
   * dropped, X-Forwarded-For/-Proto/-Host and X-Request-Id set (headers.ts).
   */
  headersForUpstream(peerTrusted: boolean): string[] {
    const { record } = this;
    return requestHeadersForUpstream(this.req.rawHeaders, this.forwardedFor(peerTrusted), this.proto, record.host, record.requestId);
  }

  /**
   * The X-Forwarded-For value the server is told: the address that connected to Velocity appended;
   * a client's own list is kept only when that peer is a trusted proxy, and replaced otherwise.
   */
  forwardedFor(peerTrusted: boolean): string {
    const clientIp = normalizeIp(this.req.socket.remoteAddress ?? '');
    const prior = peerTrusted ? (this.req.headers['x-forwarded-for'] as string | undefined) : undefined;
    return prior ? `${prior}, ${clientIp}` : clientIp;
  }

  /** Sets a response header Velocity adds, replacing an earlier value of the same name. */
  setResponseHeader(name: string, value: string): void {
    const list = (this.responseHeaders ??= []);
    const at = list.findIndex(([n]) => n === name);
    if (at >= 0) list[at] = [name, value];
    else list.push([name, value]);
  }

  addResponseHeader(name: string, value: string | string[]): void {
    (this.responseHeaders ??= []).push([name, value]);
  }
}

/** The record's protocol: the usual versions told by their numbers, without comparing or building a string per request. */
function protocolOf(req: ProxyRequest): string {
  const minor = req.httpVersionMinor;
  switch (req.httpVersionMajor) {
    case 1:
      if (minor === 1) return 'HTTP/1.1';
      if (minor === 0) return 'HTTP/1.0';
      break;
    case 2:
      if (minor === 0) return 'HTTP/2.0';
      break;
  }
  return `HTTP/${req.httpVersion}`;
}

/** A step before balancing (IP filter, rate limit). Returns an error to answer with, or nothing. */
export interface Guard {
  check(ctx: RequestContext, service: ServiceRuntime | undefined): VelocityError | undefined | Promise<VelocityError | undefined>;
}

/** What every request goes through for a config: client-IP rules and guards. */
export interface RequestRules {
  readonly clientIps: ClientIpResolver;
  readonly guards: readonly Guard[];
}
