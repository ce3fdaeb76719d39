/**
 * gRPC-Web (what browsers can send: HTTP/1.1 or HTTP/2 without trailers) turned
 * into gRPC toward servers that speak HTTP/2, as Envoy's grpc_web filter does:
 * - request: `application/grpc-web[+proto]` becomes `application/grpc[+proto]`
 *   with `te: trailers`; `application/grpc-web-text` bodies are base64 and are
 *   decoded on the way;
 * - response: the content type goes back to grpc-web, the messages pass as they
 *   are, and the server's trailers (grpc-status, grpc-message…) become the last
 *   frame of the body (flag 0x80, then `name:value\r\n` lines); in text mode the
 *   whole body is base64. A trailers-only answer keeps its status in the headers.
 */
import { Buffer } from 'node:buffer';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { ResponseDecorator } from '../middleware/response-decorator.ts';
import type { ClientResponse } from './client-response.ts';
import type { RequestBody } from './proxy-message.ts';

export type GrpcWebMode = 'binary' | 'text';

const WEB = 'application/grpc-web';
const WEB_TEXT = 'application/grpc-web-text';

/** The request's gRPC-Web mode, or undefined when it is not gRPC-Web. */
export function grpcWebMode(headers: IncomingHttpHeaders): GrpcWebMode | undefined {
  const type = headers['content-type'];
  if (typeof type !== 'string' || !type.startsWith(WEB)) return undefined;
  return type.startsWith(WEB_TEXT) ? 'text' : 'binary';
}

/** The content type of a gRPC-Web request as the gRPC server gets it: `application/grpc` plus the same `+format` suffix. */
export function grpcContentType(webType: string): string {
  const rest = webType.startsWith(WEB_TEXT) ? webType.slice(WEB_TEXT.length) : webType.slice(WEB.length);
  return `application/grpc${rest}`;
}

/** The content type a gRPC-Web client gets for a server's `application/grpc[+suffix]` answer. */
export function grpcWebContentType(grpcType: string | undefined, mode: GrpcWebMode): string {
  const base = mode === 'text' ? WEB_TEXT : WEB;
  const type = grpcType ?? 'application/grpc';
  return type.startsWith('application/grpc') ? `${base}${type.slice('application/grpc'.length)}` : `${base}+proto`;
}

/** Decodes a base64 body as it streams (4 characters at a time, padding allowed between chunks). */
export class Base64Decoder extends Transform {
  private rest = '';
  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    const text = this.rest + chunk.toString('latin1').replace(/\s+/g, '');
    const whole = text.length - (text.length % 4);
    this.rest = text.slice(whole);
    if (whole > 0) {
      const decoded = decodeGroups(text.slice(0, whole));
      if (decoded === undefined) {
        done(Object.assign(new Error('gRPC-Web text body is not base64'), { code: 'GRPC_WEB_BAD_BASE64' }));
        return;
      }
      this.push(decoded);
    }
    done();
  }
  override _flush(done: TransformCallback): void {
    done(this.rest.length > 0 ? Object.assign(new Error('gRPC-Web text body ends mid base64 group'), { code: 'GRPC_WEB_BAD_BASE64' }) : undefined);
  }
}

const BASE64_GROUPS = /^(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)*$/;

/** Base64 text made of whole groups, where a padded group may end one chunk of the sender's and another follow. */
function decodeGroups(text: string): Buffer | undefined {
  if (!BASE64_GROUPS.test(text)) return undefined;
  if (!text.includes('=')) return Buffer.from(text, 'base64');
  const parts: Buffer[] = [];
  for (let at = 0; at < text.length; ) {
    const end = text.indexOf('=', at);
    const stop = end < 0 ? text.length : end + (text[end + 1] === '=' ? 2 : 1);
    parts.push(Buffer.from(text.slice(at, stop), 'base64'));
    at = stop;
  }
  return Buffer.concat(parts);
}

/** Trailers as the last gRPC-Web frame: flag 0x80, a 4-byte length, then HTTP/1-style header lines. */
export function trailerFrame(trailers: Record<string, string | string[] | undefined>): Buffer {
  let text = '';
  for (const name in trailers) {
    const value = trailers[name];
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) text += `${name.toLowerCase()}:${v}\r\n`;
  }
  const body = Buffer.from(text, 'latin1');
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = 0x80;
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  return frame;
}

/**
 * The client response of a gRPC-Web call: the server's head with the grpc-web
 * content type, messages passed on (base64 in text mode, kept one continuous
 * base64 text), trailers written as the closing frame.
 */
export class GrpcWebResponse extends ResponseDecorator {
  private readonly mode: GrpcWebMode;
  /** Text mode: bytes not yet encoded (fewer than 3), so the output stays one base64 text without inner padding. */
  private carry: Buffer | undefined;
  private trailers: Record<string, string | string[] | undefined> | undefined;

  constructor(inner: ClientResponse, mode: GrpcWebMode) {
    super(inner);
    this.mode = mode;
  }

  override writeHead(statusCode: number, statusMessage: string | undefined, headers: string[]): unknown {
    const out: string[] = [];
    let type: string | undefined;
    for (let i = 0; i < headers.length; i += 2) {
      const name = (headers[i] as string).toLowerCase();
      if (name === 'content-type') type = headers[i + 1];
      // The body changes length (trailer frame, base64): the response frames itself.
      else if (name !== 'content-length') out.push(name, headers[i + 1] as string);
    }
    out.push('content-type', grpcWebContentType(type, this.mode));
    return this.inner.writeHead(statusCode, statusMessage, out);
  }

  override write(chunk: Uint8Array): boolean {
    if (this.mode === 'binary') return this.inner.write(chunk);
    const bytes = this.carry ? Buffer.concat([this.carry, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const whole = bytes.length - (bytes.length % 3);
    this.carry = whole < bytes.length ? Buffer.from(bytes.subarray(whole)) : undefined;
    return whole > 0 ? this.inner.write(Buffer.from(bytes.subarray(0, whole).toString('base64'), 'latin1')) : true;
  }

  /** The server's trailers, sent as the body's last frame at end(). */
  addTrailers(trailers: Record<string, string | string[] | undefined>): void {
    this.trailers = { ...this.trailers, ...trailers };
  }

  override end(): unknown {
    if (this.trailers) this.write(trailerFrame(this.trailers));
    if (this.carry) {
      this.inner.write(Buffer.from(this.carry.toString('base64'), 'latin1'));
      this.carry = undefined;
    }
    return this.inner.end();
  }
}

/** The request body the gRPC server gets: the client's, base64-decoded in text mode (`onBad` is told of a body that is not base64). */
export function grpcWebRequestBody(req: RequestBody, mode: GrpcWebMode, onBad: (error: Error) => void): RequestBody {
  if (mode === 'binary') return req;
  const decoder = new Base64Decoder();
  decoder.once('error', onBad);
  return req.pipe(decoder);
}

/** Request headers of a gRPC-Web call made gRPC ones (in place). */
export function toGrpcRequestHeaders(headers: OutgoingHttpHeaders, mode: GrpcWebMode): void {
  headers['content-type'] = grpcContentType(String(headers['content-type']));
  headers.te = 'trailers';
  // Text-mode bodies shrink when decoded; HTTP/2 frames the body anyway.
  if (mode === 'text') delete headers['content-length'];
}
