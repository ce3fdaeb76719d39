/**
 * An HTTP listener bound to one address, feeding the request handler: plain
 * HTTP/1.1 (Velocity's own server on raw sockets), optionally with h2c, or
 * HTTPS (SNI certificates; by ALPN HTTP/2 goes to node:http2, http/1.1 to the
 * same raw-socket server).
 */
import { type AddressInfo, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { ClientConfig } from '../config/schema/root.ts';
import type { ListenAddress } from '../config-fields.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import type { Http01Answers } from './acme/http01.ts';
import { RequestHandler } from './handler.ts';
import { Http1Server } from './http1/server.ts';
import { Http2Front } from './http2.ts';
import { withListenerProbes } from './probes.ts';
import type { RequestListener } from './proxy-message.ts';
import type { TlsTermination } from './tls.ts';

export class ListenError extends Error {
  readonly address: ListenAddress;

  constructor(address: ListenAddress, cause: Error & { code?: string }) {
    const where = `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
    const why =
      cause.code === 'EADDRINUSE'
        ? 'the address is already in use'
        : cause.code === 'EACCES'
          ? 'permission denied (ports below 1024 need privileges)'
          : cause.code === 'EADDRNOTAVAIL'
            ? 'no such local address'
            : cause.message;
    super(`cannot listen on ${where}: ${why}`, { cause });
    this.address = address;
    this.name = 'ListenError';
  }
}

export interface HttpListener {
  readonly address: ListenAddress;
  /** Open HTTP/1.1 connections (for tests and shutdown). */
  readonly connections: () => number;
  close(deadline: number): Promise<void>;
}

export interface HttpListenerOptions {
  reusePort?: boolean;
  /** Terminate TLS with these certificates (the listener speaks HTTPS). */
  tls?: TlsTermination;
  /** HTTP/2 beside HTTP/1.1: by ALPN over TLS, by the connection preface (h2c) without. */
  http2?: boolean;
  /** A Strict-Transport-Security value for every response (HTTPS only). */
  hsts?: string;
  /** Serve with this instead of the proxy (the HTTP→HTTPS redirect listener). */
  onRequest?: RequestListener;
  /** ACME HTTP-01 challenge answers (plain HTTP listeners). */
  http01?: Http01Answers;
}

/**
 * Bytes waiting for a client before a write says "slow down" and the server's socket is paused: a slow
 * reader costs about this plus one upstream read (#22), not Node's default 64 KiB.
 */
const CLIENT_WRITE_BUFFER = 16 * 1024;

export async function listenHttp(plane: DataPlane, address: ListenAddress, client: ClientConfig, options: HttpListenerOptions = {}): Promise<HttpListener> {
  const { tls } = options;
  const handler = new RequestHandler(plane, tls ? 'https' : 'http', client.underscore_headers, client.abort_on_close);
  const hsts = tls ? options.hsts : undefined;
  const serve: RequestListener =
    options.onRequest ??
    withListenerProbes(
      plane,
      hsts
        ? (req, res) => {
            res.setHeader('strict-transport-security', hsts);
            handler.handle(req, res);
          }
        : handler.handle,
    );
  // ACME HTTP-01 answers come before routing and redirects, on plain HTTP only.
  const onRequest = !tls && options.http01 ? options.http01.wrap(serve) : serve;
  const http1 = new Http1Server(client, {
    onRequest,
    // Only WebSocket upgrades leave the request path; any other Upgrade header is dropped as hop-by-hop.
    wantsUpgrade: options.onRequest ? () => false : handler.wantsUpgrade,
    onUpgrade: (req, res, socket, head) => {
      if (hsts) res.setHeader('strict-transport-security', hsts);
      handler.handleUpgrade(req, res, socket, head);
    },
  });
  const h2 = options.http2 ? new Http2Front(onRequest, client, plane.log) : undefined;
  const accept = (socket: Socket) => http1.accept(socket);
  let server: NetServer;
  if (tls) {
    const tlsServer = createTlsServer(
      {
        ...tls.serverOptions(),
        ...tls.handshakeOptions(options.http2 ? ['h2', 'http/1.1'] : ['http/1.1']),
        // A client that opens a connection and never finishes the handshake is cut like a slow HTTP client.
        handshakeTimeout: client.header_timeout,
        allowHalfOpen: true,
        highWaterMark: CLIENT_WRITE_BUFFER,
      },
      (socket: TLSSocket) => (h2 && socket.alpnProtocol === 'h2' ? h2.accept(socket) : accept(socket)),
    );
    tls.attach(tlsServer);
    // A failed handshake (plain HTTP or a scanner on the TLS port) only ends that connection.
    tlsServer.on('tlsClientError', (err: Error, socket: Socket) => {
      plane.log.debug({ err: err.message, client: socket.remoteAddress }, 'TLS handshake failed');
      socket.destroy();
    });
    server = tlsServer;
  } else {
    // allowHalfOpen: a client that half-closes after its request still gets the response.
    server = createNetServer({ allowHalfOpen: true, noDelay: true, highWaterMark: CLIENT_WRITE_BUFFER }, (socket) => (h2 ? h2.sniff(socket, accept) : accept(socket)));
  }
  if (client.max_connections > 0) server.maxConnections = client.max_connections;
  await bindServer(server, address, options.reusePort ?? false);
  server.on('error', (err) => plane.log.error({ err }, 'listener error'));
  const bound = server.address() as AddressInfo;
  return {
    address: { host: bound.address, port: bound.port },
    connections: () => http1.connectionCount,
    close: async (deadline) => {
      tls?.close();
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([http1.close(deadline), h2?.close(deadline), handler.tunnels.close(deadline)]);
      await stopped;
    },
  };
}

/** Binds a server to an address; a failure becomes a ListenError naming the address. */
export function bindServer(server: NetServer, address: ListenAddress, reusePort: boolean): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new ListenError(address, err));
    server.once('error', onError);
    server.listen({ host: address.host, port: address.port, reusePort }, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
}
