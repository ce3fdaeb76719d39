/**
 * One request's pass through its route's middleware: the transport-neutral view
 * the middleware see (implemented over the incoming request), the edits they make
 * (path, request headers, service, response headers), their answers, and the
 * decorated client response the forwarder writes into. Made only for routes that
 * have middleware; a route without pays nothing.
 */
import { Buffer } from 'node:buffer';
import { ERROR_CODES, type VelocityError } from '../errors.ts';
import type { MiddlewareChain } from '../middleware/chain.ts';
import { withoutHeaders } from '../middleware/head.ts';
import type { ForwardedRequest, Middleware, MiddlewareRequest, Reply } from '../middleware/middleware.ts';
import { HeadHookResponse } from '../middleware/response-decorator.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import type { ClientResponse } from './client-response.ts';
import { isGrpcRequest, TrailersOnlyResponse, writeGrpcReply } from './grpc.ts';
import { hasHttp2BodyWithoutLength } from './http2.ts';
import type { ProxyRequest, RequestBody } from './proxy-message.ts';
import type { HeldBody } from './request-body.ts';

/** What the run needs of the handler's request context (RequestContext fits it). */
export interface RunSource {
  readonly req: ProxyRequest;
  readonly res: ClientResponse;
  readonly clientIp: string;
  readonly proto: 'http' | 'https';
  readonly record: { readonly requestId: string; readonly host: string; readonly method: string; readonly path: string; status: number; errorCode: string | undefined };
  cookie(name: string): string | undefined;
}

/** Where a traffic split's choice is looked up. */
type Services = { service(name: string): ServiceRuntime | undefined };

export class MiddlewareRun implements MiddlewareRequest {
  url: string;
  /** Set by a traffic split. */
  serviceName: string | undefined;
  /** Set when a middleware read the body into memory. */
  body: Buffer | undefined;
  private readonly source: RunSource;
  private readonly chain: MiddlewareChain;
  /** Request header edits by lowercase name: the values to send, or null to send none. */
  private edits: Map<string, string[] | null> | undefined;
  private extraResponseHeaders: string[] | undefined;
  /** Middleware whose request hook ran (or that have none) and did not answer: their response hooks apply. */
  private reached = 0;
  private doneHooks: (() => void)[] | undefined;
  private forwardHooks: ((request: ForwardedRequest) => void)[] | undefined;

  constructor(source: RunSource, chain: MiddlewareChain) {
    this.source = source;
    this.chain = chain;
    this.url = source.record.path;
  }

  get method(): string {
    return this.source.record.method;
  }
  get clientIp(): string {
    return this.source.clientIp;
  }
  get requestId(): string {
    return this.source.record.requestId;
  }
  get host(): string {
    return this.source.record.host;
  }
  get proto(): 'http' | 'https' {
    return this.source.proto;
  }

  header(name: string): string | undefined {
    const lower = name.toLowerCase();
    const edited = this.edits?.get(lower);
    if (edited !== undefined) return edited === null ? undefined : edited.join(', ');
    const v = this.source.req.headers[lower];
    return Array.isArray(v) ? v.join(', ') : v;
  }

  cookie(name: string): string | undefined {
    return this.source.cookie(name);
  }

  setUrl(url: string): void {
    this.url = url;
  }

  setHeader(name: string, value: string): void {
    (this.edits ??= new Map()).set(name.toLowerCase(), [value]);
  }

  addHeader(name: string, value: string): void {
    const lower = name.toLowerCase();
    const current = this.edits?.get(lower);
    if (current) current.push(value);
    else {
      const original = this.source.req.headers[lower];
      const before = current === null || original === undefined ? [] : Array.isArray(original) ? original : [original];
      (this.edits ??= new Map()).set(lower, [...before, value]);
    }
  }

  removeHeader(name: string): void {
    (this.edits ??= new Map()).set(name.toLowerCase(), null);
  }

  addResponseHeader(name: string, value: string): void {
    (this.extraResponseHeaders ??= []).push(name, value);
  }

  useService(name: string): void {
    this.serviceName = name;
  }

  get bodyLength(): number | undefined {
    // Once in memory (read or replaced, e.g. decoded), the body held is what goes on.
    if (this.body) return this.body.length;
    const length = this.source.req.headers['content-length'];
    return length === undefined || this.chunked ? undefined : Number(length);
  }

  get hasBody(): boolean {
    const length = this.bodyLength;
    return length === undefined ? this.chunked : length > 0;
  }

  private get chunked(): boolean {
    return this.source.req.headers['transfer-encoding'] !== undefined || hasHttp2BodyWithoutLength(this.source.req);
  }

  setBody(body: Buffer): void {
    this.body = body;
  }

  bufferBody(max: number): Promise<boolean> {
    // Read already (the stream has ended, it would never end again): only the bound applies.
    if (this.body) return Promise.resolve(this.body.length <= max);
    return readUpTo(this.source.req, max).then((body) => {
      if (body === undefined) {
        // The rest of an over-long body is not read: the connection cannot be reused.
        this.source.res.shouldKeepAlive = false;
        return false;
      }
      this.body = body;
      return true;
    });
  }

  onDone(fn: () => void): void {
    if (!this.doneHooks) {
      const hooks: (() => void)[] = [];
      this.doneHooks = hooks;
      this.source.res.once('close', () => {
        for (const hook of hooks) hook();
      });
    }
    this.doneHooks.push(fn);
  }

  onForward(fn: (request: ForwardedRequest) => void): void {
    (this.forwardHooks ??= []).push(fn);
  }

  /**
   * Runs the request hooks in order. Returns the service to forward to (a split's
   * choice, looked up in `services`), or undefined when a middleware answered (the answer is written).
   * Synchronous while the hooks are (header rules, redirects, checks): a promise only from the first hook
   * that returns one, as a promise even of a ready value costs the request a microtask turn.
   */
  start(routed: ServiceRuntime, services: Services): ServiceRuntime | undefined | Promise<ServiceRuntime | undefined> {
    return this.runFrom(0, routed, services);
  }

  /** start() from the `from`-th hook on. */
  private runFrom(from: number, routed: ServiceRuntime, services: Services): ServiceRuntime | undefined | Promise<ServiceRuntime | undefined> {
    const items = this.chain.items;
    for (let i = from; i < items.length; i++) {
      const hook = (items[i] as Middleware).request;
      if (hook) {
        const reply = hook.call(items[i], this);
        if (reply instanceof Promise) return this.runAfter(reply, i, routed, services);
        if (reply) return this.answered(reply);
      }
      this.reached = i + 1;
    }
    if (this.serviceName === undefined) return routed;
    return services.service(this.serviceName) ?? routed;
  }

  /** start() once the `at`-th hook's answer (a promise) settled. */
  private async runAfter(pending: Promise<Reply | undefined>, at: number, routed: ServiceRuntime, services: Services): Promise<ServiceRuntime | undefined> {
    const reply = await pending;
    if (reply) return this.answered(reply);
    this.reached = at + 1;
    return this.runFrom(at + 1, routed, services);
  }

  /** A middleware answered: the answer is written (a promise while error pages are asked), and nothing is forwarded. */
  private answered(reply: Reply): undefined | Promise<undefined> {
    const written = this.answer(reply);
    return written === undefined ? undefined : written.then(() => undefined);
  }

  /** The flat header list for the server with the middleware's edits applied. */
  requestHeaders(list: string[]): string[] {
    // A body read into memory (body_limit on a chunked body) is sent with its length: any pool frames it right.
    if (this.body) this.setHeader('content-length', String(this.body.length));
    const edits = this.edits;
    if (!edits) return list;
    const out = withoutHeaders(list, Array.from(edits.keys()));
    for (const [name, values] of edits) if (values) for (const v of values) out.push(name, v);
    return out;
  }

  /** Tells the onForward listeners (mirroring) what goes to the server. */
  forwarded(method: string, path: string, headers: readonly string[], body: Buffer | HeldBody | RequestBody | null): void {
    if (!this.forwardHooks) return;
    const held = body === null || Buffer.isBuffer(body) ? body : Array.isArray(body) ? Buffer.concat(body as HeldBody) : undefined;
    const request: ForwardedRequest = { method, path, headers, body: held };
    for (const hook of this.forwardHooks) hook(request);
  }

  /** The client response as the forwarder writes it: through the response hooks of the middleware reached, last first. */
  response(): ClientResponse {
    return this.decorate(this.reached);
  }

  private decorate(upTo: number, base: ClientResponse = this.source.res): ClientResponse {
    let res = base;
    const extra = this.extraResponseHeaders;
    if (extra) res = new HeadHookResponse(res, (head) => head.headers.push(...extra));
    const items = this.chain.items;
    for (let i = 0; i < upTo; i++) {
      const m = items[i] as Middleware;
      if (m.response) {
        const hook = m.response;
        res = new HeadHookResponse(res, (head) => hook.call(m, this, head));
      }
      if (m.wrap) res = m.wrap(this, res);
    }
    return res;
  }

  /** Writes a middleware's answer (error pages may replace it) through the middleware before it; a promise only while error pages are asked. */
  private answer(reply: Reply): Promise<void> | undefined {
    if (reply.code && this.chain.answersErrors) return this.replaced(reply).then((final) => this.writeAnswer(final));
    this.writeAnswer(reply);
    return undefined;
  }

  private writeAnswer(final: Reply): void {
    const record = this.source.record;
    record.status = final.status;
    if (final.code) record.errorCode = final.code;
    // A gRPC client (or gRPC-Web) gets the answer as a gRPC status.
    if (isGrpcRequest(this.source.req))
      writeGrpcReply(this.decorate(this.reached, new TrailersOnlyResponse(this.source.res)), final, String(this.source.req.headers['content-type']));
    else writeReply(this.decorate(this.reached), final);
  }

  /** Velocity's own error answer, given to the error pages first (only when some middleware has them). */
  async answerError(error: VelocityError, extraHeaders: [string, string | string[]][] | undefined): Promise<void> {
    const res = this.source.res;
    if (res.headersSent || res.destroyed) return void res.destroy();
    const headers = ['content-type', 'text/plain; charset=utf-8', 'cache-control', 'no-store'];
    if (error.retryAfter !== undefined) headers.push('retry-after', String(Math.max(1, Math.ceil(error.retryAfter))));
    for (const [name, value] of extraHeaders ?? []) for (const v of Array.isArray(value) ? value : [value]) headers.push(name, v);
    const reply = await this.replaced({ status: error.status, code: error.code, headers, body: `${error.status} ${error.message}\n` });
    if (res.headersSent || res.destroyed) return;
    writeReply(this.decorate(this.reached), reply);
  }

  private async replaced(reply: Reply): Promise<Reply> {
    if (!this.chain.answersErrors) return reply;
    for (const m of this.chain.items) {
      if (!m.error) continue;
      try {
        const page = await m.error(this, reply);
        if (page) return page;
      } catch (err) {
        this.chain.context.warn(`error page failed: ${(err as Error).message}`);
      }
    }
    return reply;
  }
}

/** Writes a whole answer: head with Content-Length (none for 204/304), then the body. */
export function writeReply(res: ClientResponse, reply: Reply): void {
  const body = reply.body === undefined ? undefined : typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body;
  const headers = [...(reply.headers ?? [])];
  if (reply.code && reply.code in ERROR_CODES) headers.push('x-velocity-error', reply.code);
  if (reply.status !== 204 && reply.status !== 304) headers.push('content-length', String(body?.length ?? 0));
  res.writeHead(reply.status, undefined, headers);
  if (body && body.length > 0 && reply.status !== 204 && reply.status !== 304) res.write(body);
  res.end();
}

/** The whole body when it is at most `max` bytes; undefined when longer (reading stops there). */
function readUpTo(req: RequestBody, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (result: Buffer | undefined) => {
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      req.removeListener('error', onError);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.pause();
        return done(undefined);
      }
      chunks.push(chunk);
    };
    const onEnd = () => done(Buffer.concat(chunks));
    const onError = () => done(undefined);
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
  });
}
