/**
 * The HTTP/1.1 server on raw `net`/`tls` sockets: it owns the connections a
 * listener gives it, checks their deadlines in one periodic sweep (header,
 * body and keep-alive timeouts: no timer per request), and stops gracefully
 * (connections idle for a second close, busy ones after their response, the
 * rest are cut at the deadline).
 */
import type { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { epochMs } from '../../clock.ts';
import type { ClientConfig } from '../../config/schema/root.ts';
import { socketInternalsAllowed } from '../../stream-wrap.ts';
import { type ConnectionHost, Http1Connection, IDLE_UNSTAMPED } from './connection.ts';
import type { Http1Request } from './request.ts';
import type { Http1Response } from './response.ts';

export interface Http1Handlers {
  onRequest(req: Http1Request, res: Http1Response): void;
  /** Whether an upgrade request leaves HTTP (a WebSocket the handler takes). */
  wantsUpgrade(req: Http1Request): boolean;
  /** Takes the socket of an upgrade; `res` answers a refusal. */
  onUpgrade(req: Http1Request, res: Http1Response, socket: Socket, head: Buffer): void;
}

export class Http1Server implements ConnectionHost {
  readonly maxHeaderSize: number;
  readonly headerTimeout: number;
  readonly bodyTimeout: number;
  readonly keepAliveTimeout: number;
  readonly abortOnClose: boolean;
  readonly socketInternals = socketInternalsAllowed();
  draining = false;
  private readonly connections = new Set<Http1Connection>();
  private readonly handlers: Http1Handlers;
  private readonly sweeper: NodeJS.Timeout;
  private emptied: (() => void) | undefined;

  constructor(client: ClientConfig, handlers: Http1Handlers) {
    this.maxHeaderSize = client.max_header_size;
    this.headerTimeout = client.header_timeout;
    this.bodyTimeout = client.body_timeout;
    this.keepAliveTimeout = client.keepalive_timeout;
    this.abortOnClose = client.abort_on_close;
    this.handlers = handlers;
    // Deadlines are checked a few times per shortest timeout, at most once a second.
    const every = Math.min(1000, Math.max(50, Math.floor(Math.min(this.headerTimeout, this.keepAliveTimeout) / 4)));
    this.sweeper = setInterval(() => this.sweep(), every).unref();
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Serves HTTP/1.1 on a connected (and, for TLS, handshaken) socket. */
  accept(socket: Socket): void {
    if (this.draining) {
      socket.destroy();
      return;
    }
    this.connections.add(new Http1Connection(this, socket));
  }

  onRequest(req: Http1Request, res: Http1Response): void {
    this.handlers.onRequest(req, res);
  }

  wantsUpgrade(req: Http1Request): boolean {
    return this.handlers.wantsUpgrade(req);
  }

  onUpgrade(req: Http1Request, res: Http1Response, socket: Socket, head: Buffer): void {
    this.handlers.onUpgrade(req, res, socket, head);
  }

  forget(connection: Http1Connection): void {
    this.connections.delete(connection);
    if (this.connections.size === 0) this.emptied?.();
  }

  private sweep(): void {
    // The connections' deadlines are on epochMs()'s clock (src/clock.ts).
    const now = epochMs();
    for (const c of this.connections) {
      if (c.deadline === IDLE_UNSTAMPED) c.idleFrom(now);
      else if (c.deadline !== 0 && now >= c.deadline) c.expire();
      else if (this.draining) c.closeIfIdle(now);
    }
  }

  /** Stops serving: idle connections close now, busy ones after their response; at `deadline` the rest are cut. */
  close(deadline: number): Promise<void> {
    this.draining = true;
    const now = epochMs();
    for (const c of this.connections) c.closeIfIdle(now);
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(cut);
        clearInterval(this.sweeper);
        resolve();
      };
      const cut = setTimeout(
        () => {
          for (const c of this.connections) c.socket.destroy();
        },
        Math.max(0, deadline - Date.now()),
      );
      this.emptied = done;
      if (this.connections.size === 0) done();
    });
  }
}
