/**
 * What the request path reads of a client's request and writes into the answer,
 * typed on Velocity's own terms instead of node:http's IncomingMessage and
 * ServerResponse: the HTTP/1.1 server's Http1Request/Http1Response implement
 * these, and node:http2's compatibility request/response fit them (checked where
 * they are handed over, in http2.ts). The handler, its context, middleware,
 * gRPC and WebSocket code, probes, redirects and error answers use only these.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { ClientResponse } from './client-response.ts';

type Listener = (...args: never[]) => void;

/**
 * A request body as the request path reads it: the part of a Readable it uses ('data', 'end',
 * 'error' and 'close' events, pause/resume, pipe, destroy). node:http2's request is a Readable;
 * the HTTP/1.1 server's request makes its stream only when the body is read (a GET never does).
 */
export interface RequestBody {
  on(event: string, listener: Listener): this;
  once(event: string, listener: Listener): this;
  removeListener(event: string, listener: Listener): this;
  pause(): this;
  resume(): this;
  pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T;
  destroy(error?: Error): this;
  readonly destroyed: boolean;
  /**
   * The stream yields the body with its chunked framing exactly as the client sent it (sizes,
   * extensions, CRLFs, the last chunk; trailers dropped), not the decoded payload: the upstream
   * request passes it on unchanged. Only after ProxyRequest.passChunkFraming said so.
   */
  readonly chunkFraming?: boolean;
}

/** A request's head, and its body as a stream (read by the forwarder, or buffered for retries). */
export interface ProxyRequest extends RequestBody {
  readonly method: string;
  /** The request target (origin form; the head check rewrites an absolute form to it). */
  url: string;
  readonly httpVersion: string;
  readonly httpVersionMajor: number;
  readonly httpVersionMinor: number;
  /** The head's fields as sent: name, value, name, value… */
  readonly rawHeaders: string[];
  /** Lower-cased names to values, repeats joined as Node joins them (the header dictionary type is node:http's). */
  headers: IncomingHttpHeaders;
  /** The connection: its peer address (client IP, X-Forwarded-For). */
  readonly socket: { readonly remoteAddress?: string | undefined };
  /** The whole body arrived. */
  readonly complete: boolean;
  /**
   * HTTP/1.1 chunked bodies: asks for the body with its chunk framing as received (see
   * RequestBody.chunkFraming) before anything read it; whether it will be so.
   */
  passChunkFraming?(): boolean;
  /** With chunk framing passed through: the payload bytes received (framing not counted). */
  readonly payloadBytes?: number;
  /**
   * The HTTP/1.1 server's parser did checkRequestHead's Host checks (one Host on 1.1, at most one on 1.0,
   * no Transfer-Encoding on 1.0) and found the Host value well-formed: true. Absent elsewhere.
   */
  readonly hostChecked?: boolean;
  /**
   * The HTTP/1.1 server's: the caller is done with the body it read whole and nothing holds a byte of it
   * any more; its memory is reused for a later body (http1/body-buffers.ts).
   */
  releaseBody?(): void;
}

type HeaderValue = string | number | readonly string[];
/** Headers for writeHead: an object (node:http's dictionary type), or a flat name, value… list. */
export type ResponseHeaders = OutgoingHttpHeaders | readonly string[];

/** A response Velocity answers itself (errors, probes, redirects, middleware) or streams a server's answer into. */
export interface ProxyResponse extends ClientResponse {
  statusCode: number;
  setHeader(name: string, value: HeaderValue): unknown;
  getHeader(name: string): HeaderValue | undefined;
  hasHeader(name: string): boolean;
  writeHead(statusCode: number, headers?: ResponseHeaders): unknown;
  writeHead(statusCode: number, statusMessage: string | undefined, headers?: ResponseHeaders): unknown;
  end(data?: string | Uint8Array): unknown;
  /** HTTP/2 responses only: trailers sent after the body (HTTP/1.1 clients get none). */
  addTrailers?(headers: Record<string, string>): void;
  on(event: 'close' | 'drain' | 'finish', listener: () => void): unknown;
  once(event: 'close' | 'drain' | 'finish', listener: () => void): unknown;
  /**
   * The HTTP/1.1 server's: `watcher` is told when the response closes, before the 'close' listeners — one
   * watcher, an object the caller has anyway, instead of a listener function (and its closure) made for it.
   */
  watchClose?(watcher: CloseWatcher): void;
}

/** What watches a response close (ProxyResponse.watchClose). */
export interface CloseWatcher {
  responseClosed(): void;
}

/** What a listener serves requests with. */
export type RequestListener = (req: ProxyRequest, res: ProxyResponse) => void;
