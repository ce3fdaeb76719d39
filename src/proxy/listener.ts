/** An HTTP listener bound to one address, feeding the request handler. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ListenAddress } from '../config/schema/common.ts';
import type { ClientConfig } from '../config/schema/root.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { RequestHandler } from './handler.ts';

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

export async function listenHttp(plane: DataPlane, address: ListenAddress, client: ClientConfig, options: { reusePort?: boolean } = {}): Promise<HttpListener> {
  const handler = new RequestHandler(plane, 'http');
  const server = createServer(
    {
      keepAliveTimeout: client.keepalive_timeout,
      headersTimeout: client.header_timeout,
      requestTimeout: client.body_timeout,
      maxHeaderSize: client.max_header_size,
      connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(client.header_timeout / 4))),
      requireHostHeader: true,
      noDelay: true,
    },
    handler.handle,
  );
  if (client.max_connections > 0) server.maxConnections = client.max_connections;
  // A malformed request gets 400 from Node's parser and is never forwarded; the socket closes.
  server.on('clientError', (err: Error & { code?: string }, socket) => {
    if (!socket.writable) return socket.destroy();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    const code = status.startsWith('431') ? 'HEADERS_TOO_LARGE' : status.startsWith('408') ? 'CLIENT_TIMEOUT' : 'BAD_REQUEST';
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\nx-velocity-error: ${code}\r\n\r\n`);
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new ListenError(address, err));
    server.once('error', onError);
    server.listen({ host: address.host, port: address.port, reusePort: options.reusePort ?? false }, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => plane.log.error({ err }, 'listener error'));
  const bound = server.address() as AddressInfo;
  return {
    server,
    address: { host: bound.address, port: bound.port },
    close: (deadline) => closeGracefully(server, deadline),
  };
}

/** Stops accepting, closes idle keep-alive connections, and cuts the rest at the deadline. */
export function closeGracefully(server: Server, deadline: number): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    const idle = setInterval(() => server.closeIdleConnections(), 100);
    const cut = setTimeout(() => server.closeAllConnections(), Math.max(0, deadline - Date.now()));
    server.once('close', () => {
      clearInterval(idle);
      clearTimeout(cut);
    });
  });
}
