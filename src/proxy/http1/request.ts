/**
 * A request read by the HTTP/1.1 server: a ProxyRequest — the head's fields
 * (method, url, headers, rawHeaders, httpVersion…), and the body as a Readable fed by the connection with
 * backpressure (a full buffer pauses the client socket; reading resumes it).
 *
 * The Readable is made only when the body is read or its first bytes arrive: a request without a
 * body that nobody reads (most GETs) builds no stream state and emits nothing.
 */
import type { Buffer } from 'node:buffer';
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { ProxyRequest } from '../proxy-message.ts';
import { giveBackBodyBuffer, MAX_POOLED_BODY, takeBodyBuffer } from './body-buffers.ts';
import { LOWER_NAMES, type RequestHead } from './head-parser.ts';
import { owned } from './socket-io.ts';

/** Names of which only the first copy counts, as Node keeps them (a repeat is dropped, not joined). */
const SINGLE = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

const BODY_BUFFER = { highWaterMark: 64 * 1024 };

/** What the request's body reading asks of its connection. */
export interface BodySource {
  /** The body's reader wants more: resume the socket (and send 100 Continue if it is owed). */
  bodyWanted(): void;
}

let streamsMade = 0;
/** Body streams made so far in this process (a bodiless request served makes none). */
export function bodyStreamsMade(): number {
  return streamsMade;
}

type Listener = (...args: never[]) => void;

/** The body as a Readable; its reader wanting more is passed to the connection. */
class BodyStream extends Readable {
  private readonly source: BodySource;

  constructor(source: BodySource) {
    // One socket read (64 KB) fits before the socket is paused.
    super(BODY_BUFFER);
    this.source = source;
    streamsMade++;
  }

  override _read(): void {
    this.source.bodyWanted();
  }
}

export class Http1Request implements ProxyRequest {
  /** The head as parsed: the fields below that are the head's are read from it, not copied (8 bytes each, every request). */
  private readonly head: RequestHead;
  url: string;
  readonly socket: Socket;
  /** The whole body arrived (or there was none). */
  complete = false;
  private headerMap: IncomingHttpHeaders | undefined;
  private readonly source: BodySource;
  private stream: BodyStream | undefined;
  /** The body's end was seen (pushed to the stream, or pushed when the stream is made). */
  private ended = false;
  private destroyedEarly: Error | true | undefined;
  private framing = false;
  /** Body payload bytes received so far (chunk framing not counted). */
  payloadBytes = 0;
  /** A Content-Length body of up to MAX_POOLED_BODY is copied here as it arrives (body-buffers.ts). */
  private bodyBuffer: Buffer | undefined;
  private bodyBufferAt = 0;

  constructor(head: RequestHead, socket: Socket, source: BodySource) {
    this.head = head;
    this.url = head.target;
    this.socket = socket;
    this.source = source;
  }

  get method(): string {
    return this.head.method;
  }

  get httpVersion(): string {
    return this.head.minor === 1 ? '1.1' : '1.0';
  }

  get httpVersionMajor(): 1 {
    return 1;
  }

  get httpVersionMinor(): number {
    return this.head.minor;
  }

  get rawHeaders(): string[] {
    return this.head.rawHeaders;
  }

  /** The body is framed by Content-Length (its value) or chunked (-1); 0 when there is none. */
  get bodyLength(): number {
    const head = this.head;
    return head.chunked ? -1 : Math.max(0, head.contentLength);
  }

  /** The parser refused a missing or repeated Host and Transfer-Encoding on 1.0, and read the Host's syntax. */
  get hostChecked(): boolean {
    return this.head.hostWellFormed;
  }

  /** Lower-cased names to values, joined as Node joins them; built on first use. */
  get headers(): IncomingHttpHeaders {
    if (this.headerMap) return this.headerMap;
    const map: IncomingHttpHeaders = {};
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = LOWER_NAMES.get(raw[i] as string) ?? (raw[i] as string).toLowerCase();
      const value = raw[i + 1] as string;
      const had = map[name];
      if (had === undefined) map[name] = name === 'set-cookie' ? [value] : value;
      else if (name === 'set-cookie') (had as string[]).push(value);
      else if (!SINGLE.has(name)) map[name] = `${had}${name === 'cookie' ? '; ' : ', '}${value}`;
    }
    this.headerMap = map;
    return map;
  }

  set headers(map: IncomingHttpHeaders) {
    this.headerMap = map;
  }

  /** The stream yields the chunked body with its framing as the client sent it (see RequestBody). */
  get chunkFraming(): boolean {
    return this.framing;
  }

  /**
   * Asks for the chunked body with its framing as received, trailers dropped, instead of the
   * decoded payload: possible only before anything read the body. Returns whether it will be so.
   */
  passChunkFraming(): boolean {
    if (this.bodyLength !== -1 || this.stream !== undefined) return false;
    this.framing = true;
    return true;
  }

  /** The body stream, made on first use; a body that already ended (or never had bytes) ends it at once. */
  private body(): BodyStream {
    let stream = this.stream;
    if (stream !== undefined) return stream;
    stream = new BodyStream(this.source);
    this.stream = stream;
    if (this.ended) stream.push(null);
    if (this.destroyedEarly !== undefined) stream.destroy(this.destroyedEarly === true ? undefined : this.destroyedEarly);
    return stream;
  }

  /**
   * Connection: body bytes arrived (they may lie in the shared read buffer: they are copied). false: the
   * reader is full, pause the socket until `bodyWanted`.
   */
  pushBody(chunk: Buffer): boolean {
    return this.body().push(this.keep(chunk));
  }

  /** `bytes` where they outlive the read: in the body's reused buffer when it has one, else owned(). */
  private keep(bytes: Buffer): Buffer {
    if (this.bodyBuffer === undefined) {
      if (this.bodyBufferAt !== 0 || this.bodyLength <= 0 || this.bodyLength > MAX_POOLED_BODY) return owned(bytes);
      this.bodyBuffer = takeBodyBuffer(this.bodyLength);
    }
    const at = this.bodyBufferAt;
    // The connection passes at most Content-Length bytes: they fit.
    bytes.copy(this.bodyBuffer, at);
    this.bodyBufferAt = at + bytes.length;
    return this.bodyBuffer.subarray(at, this.bodyBufferAt);
  }

  /**
   * The request is done with its body, and nothing holds or will read a byte of it again (the caller
   * knows: the upstream writes of it were complete, no middleware saw it): its reused buffer goes back
   * for the next body. Only a body that arrived whole is given back.
   */
  releaseBody(): void {
    const buffer = this.bodyBuffer;
    if (buffer === undefined || !this.complete) return;
    this.bodyBuffer = undefined;
    giveBackBodyBuffer(buffer);
  }

  /** Connection: the whole body arrived (or there was none to wait for). */
  endBody(): void {
    if (this.ended) return;
    this.ended = true;
    this.stream?.push(null);
  }

  on(event: string, listener: Listener): this {
    this.body().on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  once(event: string, listener: Listener): this {
    this.body().once(event, listener as (...args: unknown[]) => void);
    return this;
  }

  removeListener(event: string, listener: Listener): this {
    this.stream?.removeListener(event, listener as (...args: unknown[]) => void);
    return this;
  }

  pause(): this {
    this.body().pause();
    return this;
  }

  resume(): this {
    this.body().resume();
    return this;
  }

  pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    return this.body().pipe(destination, options);
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return this.body()[Symbol.asyncIterator]();
  }

  destroy(error?: Error): this {
    if (this.stream !== undefined) this.stream.destroy(error);
    else this.destroyedEarly ??= error ?? true;
    return this;
  }

  get destroyed(): boolean {
    return this.stream !== undefined ? this.stream.destroyed : this.destroyedEarly !== undefined;
  }
}
