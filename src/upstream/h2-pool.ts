/**
 * HTTP/2 connections to servers (node:http2), pooled per server: calls share a
 * connection up to a stream cap (ours, or lower if the server says so), and more
 * connections open past it. A connection that receives GOAWAY takes no new
 * streams and closes once its open ones end; the server's last-stream-id tells
 * which of our streams it never processed (those may be sent again anywhere).
 * PINGs find connections that died without a word.
 */
import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import { performance } from 'node:perf_hooks';
import type { Http2SessionsConfig } from '../config/schema/grpc.ts';
import { http2 } from '../node-http2.ts';
import type { DeadlineSweep, Expiring } from './deadline-sweep.ts';
import type { UpstreamServer } from './server.ts';
import { tlsConnectOptions, type UpstreamTlsOptions } from './tls.ts';

/** Per-stream receive window we announce: large enough for fast transfers, small enough to bound memory per stream. */
const STREAM_WINDOW = 1 << 20;
/** Receive window of the whole connection. */
const SESSION_WINDOW = 8 << 20;

export interface H2PoolOptions {
  connectTimeout: number;
  sessions: Http2SessionsConfig;
  tls: UpstreamTlsOptions | undefined;
}

/** An error opening or running a stream, with whether the server can have seen the request. */
export class H2StreamError extends Error {
  readonly code: string;
  /** True when the server never processed the stream (connect failed, refused, above GOAWAY's last-stream-id). */
  readonly unprocessed: boolean;
  constructor(message: string, code: string, unprocessed: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.unprocessed = unprocessed;
  }
}

/**
 * One connection to a server. While it carries no stream it waits in the thread's deadline sweep to be
 * closed after `idle_timeout` (a timer each time it went idle was one per request at low concurrency).
 */
export class H2Connection implements Expiring {
  readonly session: ClientHttp2Session;
  active = 0;
  draining = false;
  /** Whether it is up: a stream can be opened at once. */
  connected = false;
  /** When an idle connection closes (performance.now()); 0 while it carries streams (Expiring). */
  deadline = 0;
  private readonly sweep: DeadlineSweep;
  /** From GOAWAY: streams with a higher id were never processed. */
  lastStreamId = Number.POSITIVE_INFINITY;
  readonly ready: Promise<void>;
  /**
   * The server's SETTINGS_MAX_CONCURRENT_STREAMS, kept from its SETTINGS frames: reading
   * session.remoteSettings builds a new object on every call, and the pool asks on every pick.
   */
  private peerMaxStreams = Number.POSITIVE_INFINITY;
  private readonly pingTimer: NodeJS.Timeout;
  private readonly options: H2PoolOptions;

  constructor(server: UpstreamServer, options: H2PoolOptions, sweep: DeadlineSweep, onGone: (c: H2Connection) => void) {
    this.options = options;
    this.sweep = sweep;
    const authority = `${server.tls ? 'https' : 'http'}://${server.host.includes(':') ? `[${server.host}]` : server.host}:${server.port}`;
    const tls = server.tls ? { ...tlsConnectOptions(options.tls ?? { rejectUnauthorized: true }, server.host), ALPNProtocols: ['h2'] } : {};
    this.session = http2().connect(authority, {
      ...tls,
      settings: { enablePush: false, initialWindowSize: STREAM_WINDOW },
      // Velocity's own cap decides how many streams it opens; this is node's guard against a runaway peer.
      peerMaxConcurrentStreams: options.sessions.max_streams,
    });
    const session = this.session;
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const err = new H2StreamError(`connect to ${server.id} timed out after ${options.connectTimeout}ms`, 'UND_ERR_CONNECT_TIMEOUT', true);
        session.destroy(err);
        reject(err);
      }, options.connectTimeout);
      session.once('connect', () => {
        clearTimeout(timer);
        const alpn = (session.socket as { alpnProtocol?: string | false } | undefined)?.alpnProtocol;
        if (server.tls && alpn !== 'h2') {
          const err = new H2StreamError(`${server.id} did not agree to HTTP/2 over TLS (ALPN gave ${alpn || 'nothing'})`, 'VELOCITY_NO_H2', true);
          session.destroy(err);
          reject(err);
          return;
        }
        session.setLocalWindowSize(SESSION_WINDOW);
        this.connected = true;
        resolve();
      });
      session.once('error', (err: Error & { code?: string }) => {
        clearTimeout(timer);
        reject(new H2StreamError(err.message, err.code ?? 'ECONNRESET', true, { cause: err }));
      });
      // Closed before it connected (pool closed by a reload): the streams waiting for it go elsewhere, never hang.
      session.once('close', () => {
        clearTimeout(timer);
        reject(new H2StreamError(`connection to ${server.id} closed before it was up`, 'ECONNRESET', true));
      });
    });
    // A rejection nobody awaits yet (the opener awaits it) must not be reported as unhandled.
    this.ready.catch(() => undefined);
    session.on('error', () => undefined);
    session.on('remoteSettings', (settings) => {
      this.peerMaxStreams = settings.maxConcurrentStreams ?? Number.POSITIVE_INFINITY;
    });
    session.on('goaway', (_code: number, lastStreamId: number) => {
      this.draining = true;
      this.lastStreamId = Math.min(this.lastStreamId, lastStreamId);
      onGone(this);
    });
    session.once('close', () => {
      this.draining = true;
      clearInterval(this.pingTimer);
      this.notIdle();
      onGone(this);
    });
    this.pingTimer = setInterval(() => this.ping(), options.sessions.ping_interval);
    this.pingTimer.unref();
  }

  /** Sends a PING; no answer within ping_timeout means the connection is dead: it is destroyed, failing its streams. */
  private ping(): void {
    const session = this.session;
    if (session.destroyed || session.closed || session.connecting) return;
    const timer = setTimeout(() => session.destroy(new Error('PING timeout')), this.options.sessions.ping_timeout);
    timer.unref();
    const sent = session.ping((err) => {
      clearTimeout(timer);
      if (err && !session.destroyed) session.destroy(err);
    });
    if (!sent) clearTimeout(timer);
  }

  /** Streams this connection may carry now: our cap, or the server's when lower. */
  get capacity(): number {
    return Math.min(this.options.sessions.max_streams, this.peerMaxStreams);
  }

  get usable(): boolean {
    return !this.draining && !this.session.closed && !this.session.destroyed;
  }

  /** Counts a stream about to be opened here (so a burst spreads before the streams exist). */
  reserve(): void {
    this.active++;
    this.notIdle();
  }

  private notIdle(): void {
    if (this.deadline !== 0) {
      this.deadline = 0;
      this.sweep.delete(this);
    }
  }

  /** Idle past idle_timeout (the sweep, up to a tick late). */
  expire(): void {
    this.notIdle();
    if (this.active === 0) this.session.close();
  }

  /** Opens the reserved stream. Errors carry whether the server can have seen it. */
  open(headers: OutgoingHttpHeaders, endStream: boolean): ClientHttp2Stream {
    let stream: ClientHttp2Stream;
    try {
      stream = this.session.request(headers, { endStream });
    } catch (err) {
      this.active--;
      // Closed by a GOAWAY between the pick and now: nothing was sent.
      throw new H2StreamError((err as Error).message, (err as { code?: string }).code ?? 'ERR_HTTP2_GOAWAY_SESSION', true, { cause: err });
    }
    stream.once('close', () => {
      this.active--;
      if (this.active === 0 && !this.draining) {
        this.deadline = performance.now() + this.options.sessions.idle_timeout;
        this.sweep.add(this);
      }
      if (this.active === 0 && this.draining && !this.session.destroyed) this.session.close();
    });
    return stream;
  }

  /** Whether a stream that ended without a response was never processed by the server. */
  neverProcessed(stream: ClientHttp2Stream): boolean {
    return stream.id === undefined || stream.id > this.lastStreamId || stream.rstCode === http2().constants.NGHTTP2_REFUSED_STREAM;
  }

  destroy(): void {
    this.session.destroy();
  }
}

/** The connections to one server. */
export class H2ServerPool {
  private connections: H2Connection[] = [];
  private readonly server: UpstreamServer;
  readonly options: H2PoolOptions;
  private readonly sweep: DeadlineSweep;

  constructor(server: UpstreamServer, options: H2PoolOptions, sweep: DeadlineSweep) {
    this.server = server;
    this.options = options;
    this.sweep = sweep;
  }

  get url(): string {
    return this.server.url;
  }

  /**
   * A connection for one more stream: the first usable one with room, else a new
   * one (up to max_sessions), else the least busy (the stream waits there for a slot).
   */
  connection(): H2Connection | Promise<H2Connection> {
    const picked = this.pick();
    // Counted before it is up, so that a burst fills one connection before opening another.
    picked.reserve();
    // One that is up is answered at once: no promise per stream.
    return picked.connected ? picked : this.whenUp(picked);
  }

  private async whenUp(picked: H2Connection): Promise<H2Connection> {
    try {
      await picked.ready;
    } catch (err) {
      picked.active--;
      throw err;
    }
    return picked;
  }

  private pick(): H2Connection {
    let least: H2Connection | undefined;
    for (const c of this.connections) {
      if (!c.usable) continue;
      if (c.active < c.capacity) return c;
      if (!least || c.active < least.active) least = c;
    }
    if (least && this.connections.length >= this.options.sessions.max_sessions) return least;
    const fresh = new H2Connection(this.server, this.options, this.sweep, (gone) => this.forget(gone));
    this.connections.push(fresh);
    return fresh;
  }

  private forget(connection: H2Connection): void {
    this.connections = this.connections.filter((c) => c !== connection);
  }

  get size(): number {
    return this.connections.length;
  }

  /** Closes every connection gracefully (open streams finish). */
  close(): void {
    for (const c of this.connections) c.session.close();
    this.connections = [];
  }

  destroy(): void {
    for (const c of this.connections) c.destroy();
    this.connections = [];
  }
}

/**
 * HTTP/2 pools of one thread, one per server URL and connection settings: services
 * that share a server with different settings get a pool each (never closing each
 * other's). A reload that changes the settings makes a new pool; the old one's
 * connections close when idle, or at once when the server leaves (retain).
 */
export class H2Pools {
  private readonly pools = new Map<string, H2ServerPool>();
  private readonly keys = new WeakMap<H2PoolOptions, string>();
  private readonly sweep: DeadlineSweep;

  /** `sweep`: the thread's deadline sweep, where idle connections wait to be closed. */
  constructor(sweep: DeadlineSweep) {
    this.sweep = sweep;
  }

  get(server: UpstreamServer, options: H2PoolOptions): H2ServerPool {
    const key = `${this.keyOf(options)} ${server.url}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new H2ServerPool(server, options, this.sweep);
      this.pools.set(key, pool);
    }
    return pool;
  }

  private keyOf(options: H2PoolOptions): string {
    let key = this.keys.get(options);
    if (key === undefined) {
      key = JSON.stringify([options.connectTimeout, options.sessions, options.tls]);
      this.keys.set(options, key);
    }
    return key;
  }

  /** Closes pools of servers no longer in use. */
  retain(urls: ReadonlySet<string>): void {
    for (const [key, pool] of this.pools) {
      if (!urls.has(pool.url)) {
        this.pools.delete(key);
        pool.close();
      }
    }
  }

  closeAll(): void {
    for (const pool of this.pools.values()) pool.destroy();
    this.pools.clear();
  }
}
