/**
 * An HTTP listener bound to one address, feeding the request handler: plain
 * HTTP/1.1, optionally with h2c, or HTTPS (SNI certificates, HTTP/2 by ALPN).
 */
import { createServer, type Server, type ServerOptions } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import type { ListenAddress } from '../config/schema/common.ts';
import type { ClientConfig } from '../config/schema/root.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import type { Http01Answers } from './acme/http01.ts';
import { closeGracefully, trackConnectionUse } from './graceful-close.ts';
import { RequestHandler } from './handler.ts';
import { Http2Front, type RequestListener } from './http2.ts';
import { withListenerProbes } from './probes.ts';
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
  readonly server: Server;
  readonly address: ListenAddress;
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

export async function listenHttp(plane: DataPlane, address: ListenAddress, client: ClientConfig, options: HttpListenerOptions = {}): Promise<HttpListener> {
  const { tls } = options;
  const handler = new RequestHandler(plane, tls ? 'https' : 'http', client.underscore_headers);
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
  const http1: ServerOptions = {
    keepAliveTimeout: client.keepalive_timeout,
    headersTimeout: client.header_timeout,
    requestTimeout: client.body_timeout,
    maxHeaderSize: client.max_header_size,
    connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(client.header_timeout / 4))),
    // Host is checked by checkRequestHead (request-head.ts), which also refuses what is pipelined behind a bad head.
    requireHostHeader: false,
    noDelay: true,
    // Only WebSocket upgrades leave the request path; any other Upgrade header is dropped as hop-by-hop.
    shouldUpgradeCallback: options.onRequest ? () => false : handler.wantsUpgrade,
  };
  const server: Server = tls
    ? (createHttpsServer(
        {
          ...http1,
          ...tls.serverOptions(),
          ...tls.handshakeOptions(options.http2 ? ['h2', 'http/1.1'] : ['http/1.1']),
          // A client that opens a connection and never finishes the handshake is cut like a slow HTTP client.
          handshakeTimeout: client.header_timeout,
        },
        onRequest,
      ) as unknown as Server)
    : createServer(http1, onRequest);
  if (tls) {
    tls.attach(server as unknown as TlsServer);
    // A failed handshake (plain HTTP or a scanner on the TLS port) only ends that connection.
    server.removeAllListeners('tlsClientError');
    server.on('tlsClientError', (err: Error, socket: Socket) => {
      plane.log.debug({ err: err.message, client: socket.remoteAddress }, 'TLS handshake failed');
      socket.destroy();
    });
  }
  const h2 = options.http2 ? new Http2Front(onRequest, client, plane.log) : undefined;
  h2?.attach(server, tls !== undefined);
  if (!options.onRequest) server.on('upgrade', handler.handleUpgrade);
  if (client.max_connections > 0) server.maxConnections = client.max_connections;
  // Node's headersTimeout starts at the first byte: a connection that never sends one would hold a slot forever.
  server.on('connection', (socket: Socket) => {
    const silent = setTimeout(() => {
      if (socket.bytesRead === 0) socket.destroy();
    }, client.header_timeout);
    silent.unref();
    socket.once('close', () => clearTimeout(silent));
  });
  // A malformed request gets 400 from Node's parser and is never forwarded; the socket closes.
  server.on('clientError', (err: Error & { code?: string }, socket) => {
    if (!socket.writable) return socket.destroy();
    const status =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? requestLineOverflowed(err as Error & { rawPacket?: Buffer }, client.max_header_size)
          ? '414 URI Too Long'
          : '431 Request Header Fields Too Large'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? '408 Request Timeout'
          : '400 Bad Request';
    const code = status.startsWith('431') ? 'HEADERS_TOO_LARGE' : status.startsWith('414') ? 'URI_TOO_LONG' : status.startsWith('408') ? 'CLIENT_TIMEOUT' : 'BAD_REQUEST';
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\nx-velocity-error: ${code}\r\n\r\n`);
  });
  const connectionUse = trackConnectionUse(server);
  await bindServer(server, address, options.reusePort ?? false);
  server.on('error', (err) => plane.log.error({ err }, 'listener error'));
  const bound = server.address() as AddressInfo;
  return {
    server,
    address: { host: bound.address, port: bound.port },
    close: async (deadline) => {
      tls?.close();
      await Promise.all([closeGracefully(server, connectionUse, deadline), h2?.close(deadline), handler.tunnels.close(deadline)]);
    },
  };
}

/**
 * Whether a head overflow happened in the request line itself (→ 414, not 431):
 * the packet Node was parsing starts with a method and has no line end within the limit.
 * A request line trickled in over many packets is seen only as a 431.
 */
function requestLineOverflowed(err: { rawPacket?: Buffer }, limit: number): boolean {
  const packet = err.rawPacket;
  if (!packet || !/^[A-Z]{1,20} /.test(packet.subarray(0, 21).toString('latin1'))) return false;
  const lineEnd = packet.indexOf(10);
  return lineEnd < 0 ? packet.length >= limit : lineEnd >= limit;
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
