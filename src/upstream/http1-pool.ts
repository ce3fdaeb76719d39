/**
 * Keep-alive HTTP/1.1 connections to one server (plain or TLS), and the set of
 * such pools a thread owns. Idle connections are reused last-in first-out (the
 * warmest socket first) and closed after the keep-alive timeout, or a second
 * before the server's own when its Keep-Alive header gives one; one deadline
 * sweep per thread times connects, response heads, stalled bodies and idle
 * connections.
 */
import { performance } from 'node:perf_hooks';
import { DeadlineSweep, type Expiring } from './deadline-sweep.ts';
import { type ConnectionHome, Http1Connection } from './http1-connection.ts';
import { Exchange, type ExchangeSink, type UpstreamRequest } from './http1-exchange.ts';
import type { UpstreamTlsOptions } from './tls.ts';

export interface ServerPoolOptions {
  connectTimeout: number;
  keepAliveTimeout: number;
  /** tls.connect options (CA, SNI, verification) for https:// servers; undefined for http://. */
  tls: object | undefined;
  /** Idle connections kept at most; more are closed when their exchange ends. */
  maxIdle?: number;
}

/** A service's settings for its servers' pools (the pools of one server URL take their TLS connect options from it). */
export interface UpstreamPoolOptions {
  connectTimeout: number;
  keepAliveTimeout: number;
  /** TLS settings for https:// servers. */
  tls?: UpstreamTlsOptions;
}

export interface PoolTarget {
  readonly host: string;
  readonly port: number;
}

const DEFAULT_MAX_IDLE = 256;
/** How long before a server's announced keep-alive timeout (Keep-Alive: timeout=N) an idle connection is closed (undici's margin). */
const SERVER_CLOSE_MARGIN_MS = 1_000;

export class ServerPool implements ConnectionHome {
  readonly host: string;
  readonly port: number;
  readonly tls: object | undefined;
  readonly connectTimeout: number;
  private readonly keepAliveTimeout: number;
  private readonly maxIdle: number;
  private readonly idle: Http1Connection[] = [];
  private readonly all = new Set<Http1Connection>();
  private readonly sweep: DeadlineSweep;
  private closed = false;

  constructor(target: PoolTarget, options: ServerPoolOptions, sweep: DeadlineSweep) {
    this.host = target.host;
    this.port = target.port;
    this.tls = options.tls;
    this.connectTimeout = options.connectTimeout;
    this.keepAliveTimeout = options.keepAliveTimeout;
    this.maxIdle = options.maxIdle ?? DEFAULT_MAX_IDLE;
    this.sweep = sweep;
  }

  /**
   * Starts an exchange on an idle connection, or a new one. `now`: a performance.now() reading of this
   * turn, for the response-header deadline of a request sent at once (a caller that has one spares a clock read).
   */
  request(request: UpstreamRequest, sink: ExchangeSink, now: number = performance.now()): Exchange {
    const exchange = new Exchange(request, sink);
    this.dispatch(exchange, now);
    return exchange;
  }

  /** Open connections (idle and busy). */
  get size(): number {
    return this.all.size;
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** Not closed: still the pool of its server in its PoolSet (a closed one was replaced or let go). */
  get open(): boolean {
    return !this.closed;
  }

  /** On an idle connection when `reuseAt` (this turn's performance.now() reading) is given, else on a new one. */
  private dispatch(exchange: Exchange, reuseAt: number | undefined): void {
    if (this.closed) {
      exchange.sink.onError(Object.assign(new Error('the server was removed'), { code: 'VELOCITY_POOL_CLOSED' }), false);
      return;
    }
    if (reuseAt !== undefined) {
      for (let conn = this.idle.pop(); conn; conn = this.idle.pop()) {
        if (conn.usable) {
          conn.start(exchange, reuseAt);
          return;
        }
        conn.close();
      }
    }
    this.all.add(new Http1Connection(this, exchange));
  }

  release(connection: Http1Connection, serverIdleMs: number): void {
    // A server that said how long it keeps an idle connection closes it then: the pool lets go a margin
    // before, so no request is sent as the server's FIN is on its way (a reset, and a retry at best).
    const keepFor = serverIdleMs < 0 ? this.keepAliveTimeout : Math.min(this.keepAliveTimeout, serverIdleMs - SERVER_CLOSE_MARGIN_MS);
    if (this.closed || this.idle.length >= this.maxIdle || keepFor <= 0) {
      connection.close();
      return;
    }
    // Released from the read that completed its response: that read's time is now.
    connection.idleUntil(connection.lastReadAt + keepFor);
    this.idle.push(connection);
  }

  forget(connection: Http1Connection): void {
    this.all.delete(connection);
    const at = this.idle.indexOf(connection);
    if (at >= 0) this.idle.splice(at, 1);
  }

  retryFresh(exchange: Exchange): void {
    this.dispatch(exchange, undefined);
  }

  track(item: Expiring): void {
    this.sweep.add(item);
  }

  untrack(item: Expiring): void {
    this.sweep.delete(item);
  }

  /** Closes idle connections now and busy ones when their exchange ends. */
  close(): void {
    this.closed = true;
    for (const conn of this.idle.splice(0)) conn.close();
  }

  /** Cuts every connection, busy ones too. */
  destroy(): void {
    this.close();
    for (const conn of this.all) conn.close();
  }
}

/** A thread's pools, one per server URL, sharing one deadline sweep. */
export class PoolSet {
  private readonly pools = new Map<string, ServerPool>();
  private readonly optionsOf = new Map<string, ServerPoolOptions>();
  /** The thread's one deadline sweep: connections' timeouts, and requests' total and per-try timeouts (src/proxy/forwarding.ts). */
  readonly sweep = new DeadlineSweep();

  /** The pool of a server; new settings (a reload changed timeouts or TLS) start a new pool and let the old one drain. */
  get(url: string, target: PoolTarget, options: ServerPoolOptions): ServerPool {
    let pool = this.pools.get(url);
    if (pool && this.optionsOf.get(url) === options) return pool;
    pool?.close();
    pool = new ServerPool(target, options, this.sweep);
    this.pools.set(url, pool);
    this.optionsOf.set(url, options);
    return pool;
  }

  /** Closes pools of servers no longer in use (busy connections finish first). */
  retain(urls: ReadonlySet<string>): void {
    for (const [url, pool] of this.pools) {
      if (urls.has(url)) continue;
      this.pools.delete(url);
      this.optionsOf.delete(url);
      pool.close();
    }
  }

  destroyAll(): void {
    for (const pool of this.pools.values()) pool.destroy();
    this.pools.clear();
    this.optionsOf.clear();
  }
}
