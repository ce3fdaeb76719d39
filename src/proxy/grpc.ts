/**
 * gRPC as the proxy sees it: which requests are calls, their deadlines
 * (grpc-timeout), which methods may be retried, and Velocity's own errors written
 * as gRPC statuses — a "trailers-only" response (HTTP 200, application/grpc,
 * grpc-status and grpc-message in the one HEADERS frame), never a text body.
 */
import { Buffer } from 'node:buffer';
import type { Http2ServerResponse, OutgoingHttpHeaders } from 'node:http2';
import type { ErrorCode, VelocityError } from '../errors.ts';
import { ResponseDecorator } from '../middleware/response-decorator.ts';
import type { ClientResponse } from './client-response.ts';
import type { ProxyRequest, ProxyResponse } from './proxy-message.ts';

export const GRPC = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** Whether a request is a gRPC call (application/grpc, application/grpc+proto, …). */
export function isGrpcRequest(req: ProxyRequest): boolean {
  const type = req.headers['content-type'];
  return typeof type === 'string' && type.startsWith('application/grpc');
}

/** Codes that say more than their HTTP status does. */
const BY_CODE: Partial<Record<ErrorCode, number>> = {
  RATE_LIMITED: GRPC.RESOURCE_EXHAUSTED,
  PAYLOAD_TOO_LARGE: GRPC.RESOURCE_EXHAUSTED,
  HEADERS_TOO_LARGE: GRPC.RESOURCE_EXHAUSTED,
  NO_ROUTE: GRPC.UNIMPLEMENTED,
  IP_DENIED: GRPC.PERMISSION_DENIED,
  CLIENT_TIMEOUT: GRPC.DEADLINE_EXCEEDED,
  UPSTREAM_TIMEOUT: GRPC.DEADLINE_EXCEEDED,
  INTERNAL: GRPC.INTERNAL,
};

/**
 * The gRPC status for one of Velocity's errors: by code where it says more,
 * otherwise by HTTP status as gRPC's own HTTP mapping does (429 → RESOURCE_EXHAUSTED,
 * 5xx → UNAVAILABLE so clients may retry elsewhere).
 */
export function grpcStatusFor(error: { code: ErrorCode | undefined; status: number }): number {
  const byCode = error.code && BY_CODE[error.code];
  if (byCode !== undefined) return byCode;
  const s = error.status;
  if (s === 401) return GRPC.UNAUTHENTICATED;
  if (s === 403) return GRPC.PERMISSION_DENIED;
  if (s === 404) return GRPC.UNIMPLEMENTED;
  if (s === 408 || s === 504) return GRPC.DEADLINE_EXCEEDED;
  if (s === 429) return GRPC.RESOURCE_EXHAUSTED;
  if (s >= 500) return GRPC.UNAVAILABLE;
  return GRPC.INVALID_ARGUMENT;
}

/** grpc-message is percent-encoded (gRPC over HTTP/2 spec): printable ASCII except '%' stays. */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * A middleware's answer to a gRPC call (basic auth's 401, a limit's 429…) as the
 * trailers-only response a gRPC client understands: HTTP 200, the status by gRPC's
 * HTTP mapping, the answer's first line as grpc-message, its other headers kept.
 */
export function writeGrpcReply(res: ClientResponse, reply: { status: number; code?: ErrorCode; headers?: string[]; body?: string | Buffer }, requestType: string): number {
  const status = grpcStatusFor({ code: reply.code, status: reply.status });
  const headers: string[] = [];
  const given = reply.headers ?? [];
  for (let i = 0; i < given.length; i += 2) {
    const name = (given[i] as string).toLowerCase();
    if (name !== 'content-type' && name !== 'content-length') headers.push(name, given[i + 1] as string);
  }
  const message = String(reply.body ?? '').split('\n')[0] || `HTTP ${reply.status}`;
  headers.push(
    'content-type',
    requestType.startsWith('application/grpc-web') ? requestType : 'application/grpc',
    'grpc-status',
    String(status),
    'grpc-message',
    encodeGrpcMessage(message),
  );
  if (reply.code) headers.push('x-velocity-error', reply.code);
  res.writeHead(200, undefined, headers);
  res.end();
  return status;
}

/**
 * The bottom of a response that carries a gRPC status in its head: on an HTTP/2
 * client the head goes out as a trailers-only response (HEADERS with END_STREAM),
 * which is where gRPC clients read the status; an HTTP/1.1 (gRPC-Web) client gets
 * the head and an empty body.
 */
export class TrailersOnlyResponse extends ResponseDecorator {
  private sentOnStream = false;
  override writeHead(statusCode: number, statusMessage: string | undefined, headers: string[]): unknown {
    const stream = (this.inner as unknown as Partial<Http2ServerResponse>).stream;
    if (!stream || typeof stream.respond !== 'function') return this.inner.writeHead(statusCode, statusMessage, headers);
    this.sentOnStream = true;
    if (!stream.destroyed && !stream.closed) stream.respond({ ':status': statusCode, ...headerObject(headers) }, { endStream: true });
    return this;
  }
  override write(_chunk: Uint8Array): boolean {
    return true;
  }
  override end(): unknown {
    return this.sentOnStream ? this : this.inner.end();
  }
}

/** Writes one of Velocity's errors as a trailers-only gRPC response. */
export function respondGrpcError(res: ProxyResponse, error: VelocityError, extraHeaders?: [string, string | string[]][], requestType?: string | undefined): number {
  const status = grpcStatusFor(error);
  const headers: OutgoingHttpHeaders = {
    // A gRPC-Web client gets its own content type back.
    'content-type': requestType?.startsWith('application/grpc-web') ? requestType : 'application/grpc',
    'grpc-status': String(status),
    'grpc-message': encodeGrpcMessage(`${error.message} (${error.code})`),
    'x-velocity-error': error.code,
  };
  if (error.retryAfter !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(error.retryAfter)));
  if (extraHeaders) for (const [name, value] of extraHeaders) headers[name] = value;
  const stream = (res as unknown as Http2ServerResponse).stream;
  if (res.headersSent || res.destroyed) {
    // The response started: the status goes in trailers, which only HTTP/2 can carry.
    if (stream && !stream.destroyed && !stream.closed) sendStatusTrailers(res, status, headers['grpc-message'] as string);
    else res.destroy();
    return status;
  }
  if (stream && typeof stream.respond === 'function') {
    if (!stream.destroyed && !stream.closed) stream.respond({ ':status': 200, ...headers }, { endStream: true });
    return status;
  }
  res.writeHead(200, headers);
  res.end();
  return status;
}

/**
 * Ends a started HTTP/2 gRPC response with a status in trailers. The compatibility
 * response sends its trailers when the stream asks for them, so they are set there.
 */
export function sendStatusTrailers(res: ProxyResponse, status: number, message: string): void {
  res.addTrailers?.({ 'grpc-status': String(status), 'grpc-message': message });
  (res as unknown as Http2ServerResponse).stream.end();
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 };

/** grpc-timeout ("100m", "5S", up to 8 digits and a unit) in ms; undefined when absent or malformed. */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!m) return undefined;
  return Number(m[1]) * (TIMEOUT_UNITS[m[2] as string] as number);
}

/** A grpc-timeout header value for `ms` left (rounded up to whole ms, never 0). */
export function formatGrpcTimeout(ms: number): string {
  const whole = Math.max(1, Math.ceil(ms));
  return whole < 100_000_000 ? `${whole}m` : `${Math.min(99_999_999, Math.ceil(whole / 1000))}S`;
}

/** Whether a method matches one of `/pkg.Service/Method` or `/pkg.Service/*`. */
export function methodMatches(path: string, patterns: readonly string[]): boolean {
  for (const p of patterns) {
    if (p === path) return true;
    if (p.endsWith('/*') && path.startsWith(p.slice(0, -1)) && path.indexOf('/', p.length - 1) === -1) return true;
  }
  return false;
}

/** A flat header list as an object, repeated names as arrays. */
export function headerObject(list: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i < list.length; i += 2) {
    const name = (list[i] as string).toLowerCase();
    const value = list[i + 1] as string;
    const had = out[name];
    out[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [String(had), value];
  }
  return out;
}

/** A header object as a flat list (name, value, …), repeated names kept. */
export function flatHeaders(headers: OutgoingHttpHeaders): string[] {
  const list: string[] = [];
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) list.push(name, String(v));
  }
  return list;
}
