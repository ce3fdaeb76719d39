/**
 * HTTP/2 toward clients. A listener's own HTTP/1.1 server (src/proxy/http1)
 * keeps every HTTP/1.1 connection; connections that speak HTTP/2 — chosen by
 * ALPN over TLS, or by the connection preface without TLS (h2c, "prior
 * knowledge") — are handed to one node:http2 server that never listens itself. Its compatibility API gives request/response objects the
 * handler serves like HTTP/1.1 ones; servers are always spoken to in HTTP/1.1.
 */
import { Buffer } from 'node:buffer';
import type { Http2Server, Http2ServerRequest, ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { ClientConfig } from '../config/schema/root.ts';
import { http2 } from '../node-http2.ts';
import type { Logger } from '../observe/logger.ts';
import type { ProxyRequest, ProxyResponse, RequestListener } from './proxy-message.ts';

/** Concurrent streams a client may open on one connection (nginx uses 128 too). */
export const MAX_CONCURRENT_STREAMS = 128;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** Enough bytes to tell "PRI " from any HTTP/1.1 method. */
const SNIFF_BYTES = 4;

/**
 * Whether a request came over an HTTP/2 stream, not from an HTTP/1 parser (whose
 * request line may claim "HTTP/2.0": the version says nothing about the transport).
 */
export function isHttp2Stream(req: ProxyRequest): boolean {
  return (req as unknown as Partial<Http2ServerRequest>).stream !== undefined;
}

/** Whether an HTTP/2 request carries a body of unknown length (HTTP/2 has no chunked encoding). */
export function hasHttp2BodyWithoutLength(req: ProxyRequest): boolean {
  return isHttp2Stream(req) && req.headers['content-length'] === undefined && !(req as unknown as Http2ServerRequest).stream.endAfterHeaders;
}

export class Http2Front {
  private readonly server: Http2Server;
  private readonly sessions = new Set<ServerHttp2Session>();
  private closing = false;
  private readonly idleTimeout: number;
  private readonly firstByteTimeout: number;

  constructor(onRequest: RequestListener, client: ClientConfig, log: Logger) {
    this.idleTimeout = client.keepalive_timeout;
    this.firstByteTimeout = client.header_timeout;
    this.server = http2().createServer({
      settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS, maxHeaderListSize: client.max_header_size, enablePush: false },
    });
    this.server.on('request', (req: Http2ServerRequest, res) => {
      // The router and the forwarded Host come from :authority when the client sent no Host.
      if (req.headers.host === undefined && req.authority) req.headers.host = req.authority;
      // The compatibility API's request and response fit what the request path reads and writes.
      onRequest(req satisfies ProxyRequest, res satisfies ProxyResponse);
    });
    this.server.on('session', (session) => this.track(session));
    this.server.on('sessionError', (err) => log.debug({ err: err.message }, 'HTTP/2 session error'));
  }

  /** Serves a connection whose client chose h2 by ALPN (or sent the h2c preface). */
  accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.server.emit('connection', socket);
  }

  /** Reads the first bytes of a plain connection, puts them back, and gives the socket to HTTP/2 (h2c) or to `http1`. */
  sniff(socket: Socket, http1: (socket: Socket) => void): void {
    let seen: Buffer = Buffer.alloc(0);
    const done = () => {
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(seen);
    };
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, SNIFF_BYTES);
      const h2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (h2 && seen.length < SNIFF_BYTES) return;
      done();
      if (h2) return this.accept(socket);
      http1(socket);
      process.nextTick(() => socket.resume());
    };
    const onError = () => socket.destroy();
    socket.on('data', onData);
    socket.on('error', onError);
    // A client that connects and says nothing is cut like a slow HTTP/1.1 client.
    socket.setTimeout(this.firstByteTimeout, () => socket.destroy());
  }

  private track(session: ServerHttp2Session): void {
    this.sessions.add(session);
    let open = 0;
    session.on('stream', (stream) => {
      open++;
      stream.once('close', () => open--);
    });
    session.on('error', () => session.destroy());
    session.once('close', () => this.sessions.delete(session));
    // Idle connections close like HTTP/1.1 keep-alive ones; a connection waiting on a slow response is not idle.
    session.setTimeout(this.idleTimeout, () => {
      if (open === 0) session.close();
      else session.setTimeout(this.idleTimeout);
    });
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Sends GOAWAY on every connection, lets open streams finish, and cuts what remains at the deadline. */
  close(deadline: number): Promise<void> {
    this.closing = true;
    if (this.sessions.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const sessions = [...this.sessions];
      let left = sessions.length;
      const cut = setTimeout(
        () => {
          for (const s of sessions) s.destroy();
        },
        Math.max(0, deadline - Date.now()),
      );
      for (const session of sessions) {
        const settle = () => {
          if (--left === 0) {
            clearTimeout(cut);
            resolve();
          }
        };
        if (session.destroyed) settle();
        else {
          session.once('close', settle);
          session.close();
        }
      }
    });
  }
}
