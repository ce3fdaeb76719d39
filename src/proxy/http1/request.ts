/**
 * A request read by the HTTP/1.1 server: a ProxyRequest — the head's fields
 * (method, url, headers, rawHeaders, httpVersion…), and the body as a Readable fed by the connection with
 * backpressure (a full buffer pauses the client socket; reading resumes it).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { ProxyRequest } from '../proxy-message.ts';
import type { RequestHead } from './head-parser.ts';

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

export class Http1Request extends Readable implements ProxyRequest {
  readonly method: string;
  url: string;
  readonly httpVersion: string;
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor: number;
  readonly rawHeaders: string[];
  readonly socket: Socket;
  /** The whole body arrived (or there was none). */
  complete = false;
  /** The body is framed by Content-Length (its value) or chunked (-1); 0 when there is none. */
  readonly bodyLength: number;
  private headerMap: IncomingHttpHeaders | undefined;
  private readonly source: BodySource;

  constructor(head: RequestHead, socket: Socket, source: BodySource) {
    // One socket read (64 KB) fits before the socket is paused.
    super(BODY_BUFFER);
    this.method = head.method;
    this.url = head.target;
    this.httpVersion = head.minor === 1 ? '1.1' : '1.0';
    this.httpVersionMinor = head.minor;
    this.rawHeaders = head.rawHeaders;
    this.socket = socket;
    this.source = source;
    this.bodyLength = head.chunked ? -1 : Math.max(0, head.contentLength);
  }

  /** Lower-cased names to values, joined as Node joins them; built on first use. */
  get headers(): IncomingHttpHeaders {
    if (this.headerMap) return this.headerMap;
    const map: IncomingHttpHeaders = {};
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
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

  override _read(): void {
    this.source.bodyWanted();
  }
}
