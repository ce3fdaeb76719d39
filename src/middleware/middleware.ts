/**
 * The interface every middleware implements: a request hook, a response-head hook
 * and a response decorator, each optional. Middleware sees a transport-neutral view
 * of the request (method, path, flat headers, client IP) and the ClientResponse
 * interface — never node:http objects — so one implementation serves the HTTP/1.1
 * and HTTP/2 listeners alike.
 */
import type { Buffer } from 'node:buffer';
import type { Dispatcher } from 'undici';
import type { PickRequest } from '../balancer/policy.ts';
import type { ErrorCode } from '../errors.ts';
import type { ClientResponse } from '../proxy/client-response.ts';

/** What a middleware may read of the request. */
export interface RequestView {
  readonly method: string;
  /** Path with query, as it will be sent (after earlier path rules). */
  readonly url: string;
  readonly clientIp: string;
  readonly requestId: string;
  /** The Host header (or :authority) as received. */
  readonly host: string;
  readonly proto: 'http' | 'https';
  /** A request header as it will be sent (after earlier header rules); repeated ones joined by ", ". */
  header(name: string): string | undefined;
  cookie(name: string): string | undefined;
}

/** The request as a request hook may change it. */
export interface MiddlewareRequest extends RequestView {
  /** Sets the path (with query) sent to the server. */
  setUrl(url: string): void;
  /** Request header edits toward the server (names are case-insensitive). */
  setHeader(name: string, value: string): void;
  addHeader(name: string, value: string): void;
  removeHeader(name: string): void;
  /** A header for the response to the client (and to an answer), appended. */
  addResponseHeader(name: string, value: string): void;
  /** Sends the request to another service (traffic split). */
  useService(name: string): void;
  /** The length of the body held in memory once read or set; else Content-Length when given; undefined for a body of unknown length (or none). */
  readonly bodyLength: number | undefined;
  /** Whether a request body follows (a length > 0, or chunked). */
  readonly hasBody: boolean;
  /** Reads the whole body into memory when at most `max` bytes; false when longer (a body held already is only measured). */
  bufferBody(max: number): Promise<boolean>;
  /** The body read into memory by bufferBody (or set by setBody); undefined before. */
  readonly body: Buffer | undefined;
  /** Replaces the body sent to the server (a decoded one); sent with its Content-Length. */
  setBody(body: Buffer): void;
  /** Called once when the exchange is over (response finished or client gone). */
  onDone(fn: () => void): void;
  /** Told the request as it is sent to the server (once per request, before the first try). */
  onForward(fn: (request: ForwardedRequest) => void): void;
}

export interface ForwardedRequest {
  method: string;
  path: string;
  /** Flat list name, value, name, value… */
  headers: readonly string[];
  /** The body when it was small enough to hold (null: none; undefined: streamed, not held). */
  body: Buffer | null | undefined;
}

/** An answer a request hook gives instead of forwarding. */
export interface Reply {
  status: number;
  /** Flat list name, value, name, value… */
  headers?: string[];
  body?: string | Buffer;
  /** Set when the answer is one of Velocity's errors: sent as x-velocity-error, replaced by error pages. */
  code?: ErrorCode;
}

/** A response head before it is written: the status and a flat header list, both changeable. */
export interface ResponseHead {
  status: number;
  readonly headers: string[];
}

export interface Middleware {
  /** Before balancing: change the request, or answer it (then later middleware and the server are skipped). */
  request?(req: MiddlewareRequest): Reply | undefined | Promise<Reply | undefined>;
  /** The response head on its way to the client (upstream responses and answers of earlier middleware). */
  response?(req: RequestView, head: ResponseHead): void;
  /** Wraps the client response to transform the body (compression); must keep its backpressure. */
  wrap?(req: RequestView, res: ClientResponse): ClientResponse;
  /** Replaces one of Velocity's own error answers (error pages); undefined keeps it. */
  error?(req: RequestView, reply: Reply): Reply | undefined | Promise<Reply | undefined>;
}

/**
 * What middleware may do with a service: take one of its servers through the service's
 * policy for a subrequest, as a lease given back with `end()` (a service's runtime is this).
 */
export interface SubrequestService {
  acquire(request: PickRequest, exclude: undefined): { readonly server: { readonly url: string }; end(): void } | undefined;
}

/** What a factory gets besides its options. */
export interface MiddlewareContext {
  /** A service by name at request time (mirroring, error pages from a service). */
  service(name: string): SubrequestService | undefined;
  /** HTTP client for subrequests (forward auth, mirroring), shared by one thread. */
  readonly http: Dispatcher;
  /** The config file's folder: relative file names are resolved against it. */
  readonly baseDir: string;
  /** Problems seen on the data path (rate-limited by the caller). */
  warn(message: string): void;
}

export type MiddlewareFactory = (options: Record<string, unknown>, context: MiddlewareContext) => Middleware;
