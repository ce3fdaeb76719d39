/**
 * Sends one attempt of a request to one server over the upstream pool and
 * streams the answer into the client response, with backpressure both ways.
 * Decides nothing about retries: it reports what happened, and whether the client
 * response was already started (after which nothing can be retried).
 */
import type { Buffer } from 'node:buffer';
import type { ErrorCode } from '../errors.ts';
import { type AttemptOutcome, clientGoneError, type ResponseOutcome } from '../upstream/attempt.ts';
import type { DeadlineSweep } from '../upstream/deadline-sweep.ts';
import type { Exchange, ExchangeSink, UpstreamRequest } from '../upstream/http1-exchange.ts';
import { PoolSet, type ServerPool, type ServerPoolOptions, type UpstreamPoolOptions } from '../upstream/http1-pool.ts';
import type { ResponseHead } from '../upstream/response-parser.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import { isTlsFailure, tlsConnectOptions } from '../upstream/tls.ts';
import type { ClientResponse } from './client-response.ts';
import { responseHeadersFromRaw } from './headers.ts';
import type { AbortableTry, RequestAbort } from './request-abort.ts';

/** What every try of a request sends (the pool's request), and how the forwarder treats the answer. */
export interface AttemptRequest extends UpstreamRequest {
  /** Whether a response with this status is held back because another try will be made (asked once per try, at its head). */
  holdsBack(status: number): boolean;
  /** Extra response headers Velocity adds (sticky cookies, rate-limit headers). */
  readonly extraResponseHeaders: [string, string | string[]][] | undefined;
}

/** Told once how an attempt ended: the response streamed to the client, a status to retry, or the failure. */
export interface AttemptListener {
  attemptSettled(outcome: AttemptOutcome): void;
}

export function classifyUpstreamError(err: Error & { code?: string }): ErrorCode {
  if (isTlsFailure(err.code)) return 'UPSTREAM_TLS_FAILED';
  switch (err.code) {
    case 'VELOCITY_CONNECT_TIMEOUT':
    case 'VELOCITY_HEADERS_TIMEOUT':
    case 'VELOCITY_BODY_TIMEOUT':
    case 'VELOCITY_ATTEMPT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'UPSTREAM_TIMEOUT';
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EADDRNOTAVAIL':
      return 'UPSTREAM_CONNECT_FAILED';
    case 'VELOCITY_BAD_RESPONSE':
      return 'UPSTREAM_BAD_RESPONSE';
    default:
      // Node's own parser (the WebSocket path) names its errors HPE_*; not every error's code is a string.
      return typeof err.code === 'string' && err.code.startsWith('HPE_') ? 'UPSTREAM_BAD_RESPONSE' : 'UPSTREAM_RESET';
  }
}

interface LastPool {
  readonly server: UpstreamServer;
  readonly options: UpstreamPoolOptions;
  readonly pool: ServerPool;
}

/** Keep-alive connection pools, one per server, owned by one thread. */
export class UpstreamPools {
  private readonly pools = new PoolSet();
  private readonly optionsOf = new WeakMap<UpstreamPoolOptions, Map<string, ServerPoolOptions>>();

  /**
   * The last pool given for each server slot, with the server and the options it was asked with: the usual
   * request finds its pool with one load here, not four lookups (options by service options and host, pool and
   * its options by URL), nor one by server in a WeakMap (which showed in perf). Slots are few and reused: an
   * entry is kept until its slot's next server asks.
   */
  private readonly lastOf: (LastPool | undefined)[] = [];

  /** The thread's deadline sweep, which the pools' connections share. */
  get sweep(): DeadlineSweep {
    return this.pools.sweep;
  }

  get(server: UpstreamServer, options: UpstreamPoolOptions): ServerPool {
    const last = this.lastOf[server.slot];
    // An open pool is still its URL's pool in the set, made with these options: what the set would answer.
    if (last !== undefined && last.server === server && last.options === options && last.pool.open) return last.pool;
    const pool = this.pools.get(server.url, server, this.serverOptions(server, options));
    this.lastOf[server.slot] = { server, options, pool };
    return pool;
  }

  /** Built once per service options and host (the hot path asks on every request). */
  private serverOptions(server: UpstreamServer, options: UpstreamPoolOptions): ServerPoolOptions {
    let byHost = this.optionsOf.get(options);
    if (!byHost) {
      byHost = new Map();
      this.optionsOf.set(options, byHost);
    }
    const key = server.tls ? server.host : '';
    let made = byHost.get(key);
    if (!made) {
      const tls = server.tls ? tlsConnectOptions(options.tls ?? { rejectUnauthorized: true }, server.host) : undefined;
      made = { connectTimeout: options.connectTimeout, keepAliveTimeout: options.keepAliveTimeout, tls };
      byHost.set(key, made);
    }
    return made;
  }

  /** Closes pools of servers no longer in use (after they drained). */
  async retain(urls: ReadonlySet<string>): Promise<void> {
    this.pools.retain(urls);
  }

  async closeAll(): Promise<void> {
    this.pools.destroyAll();
  }
}

/**
 * One attempt: the sink of one exchange, writing into the client response.
 * Tells its listener once, when the response has been streamed to the client or
 * with the failure; `control` aborts it (client gone, total or per-try timeout).
 * A response streamed whole is told as the attempt itself (its status, bytesOut and firstByteMs, and
 * `kind` and `complete` from its class): an outcome object of those fields, copied, was garbage per request.
 */
class Attempt implements ExchangeSink, AbortableTry, ResponseOutcome {
  private readonly res: ClientResponse;
  private readonly req: AttemptRequest;
  private readonly started: number;
  private readonly control: RequestAbort;
  private readonly listener: AttemptListener;
  private exchange: Exchange | undefined;
  private settled = false;
  private responseStarted = false;
  private requestSent = false;
  bytesOut = 0;
  firstByteMs = 0;
  status = 0;
  private waitingForDrain = false;

  constructor(res: ClientResponse, req: AttemptRequest, started: number, control: RequestAbort, listener: AttemptListener) {
    this.res = res;
    this.req = req;
    this.started = started;
    this.control = control;
    this.listener = listener;
  }

  get kind(): 'response' {
    return 'response';
  }

  get complete(): true {
    return true;
  }

  start(pool: ServerPool): void {
    const control = this.control;
    if (control.reason) {
      this.abort(control.reason);
      return;
    }
    control.startTry(this);
    // The lease's clock reading, of this turn: a request sent at once counts its response-header timeout from it.
    const exchange = pool.request(this.req, this, this.started);
    if (!this.settled) this.exchange = exchange;
  }

  private settle(outcome: AttemptOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.control.endTry(this);
    if (this.waitingForDrain) this.res.removeListener('drain', this.onDrain as () => void);
    this.listener.attemptSettled(outcome);
  }

  /** The client went away, or a timeout passed. */
  abort(reason: Error & { code?: string }): void {
    if (this.settled) return;
    this.exchange?.abort();
    this.settle({
      kind: 'failed',
      code: classifyUpstreamError(reason),
      error: reason,
      responseStarted: this.responseStarted,
      requestSent: this.requestSent || (this.exchange?.headSent ?? false),
    });
  }

  /** Made when a write first waits for the client: most responses never do, and a closure per try is garbage. */
  private onDrain: (() => void) | undefined = undefined;

  private resumeOnDrain(): () => void {
    this.onDrain ??= () => {
      this.waitingForDrain = false;
      this.exchange?.resume();
    };
    return this.onDrain;
  }

  onInformational(status: number, headers: string[]): void {
    const res = this.res;
    if (res.writeInformational) {
      res.writeInformational(status, responseHeadersFromRaw(headers));
      return;
    }
    // node:http answers Expect: 100-continue itself; of the rest it can only send Early Hints.
    if (status !== 103 || !res.writeEarlyHints) return;
    const hints: Record<string, string[]> = {};
    for (let i = 0; i < headers.length; i += 2) (hints[(headers[i] as string).toLowerCase()] ??= []).push(headers[i + 1] as string);
    if (hints.link) res.writeEarlyHints(hints);
  }

  onHead(head: ResponseHead, requestDone: boolean, readAt: number): boolean {
    this.requestSent = true;
    this.status = head.status;
    // The read's own clock reading: the head arrived then.
    this.firstByteMs = readAt - this.started;
    const res = this.res;
    if (this.req.holdsBack(head.status)) {
      this.exchange?.abort();
      this.settle({ kind: 'retryable-status', status: head.status, firstByteMs: this.firstByteMs });
      return false;
    }
    if (res.destroyed) {
      // Says nothing about the server: not a failure for passive health or the breaker.
      this.exchange?.abort();
      const error = clientGoneError();
      this.settle({ kind: 'failed', code: 'UPSTREAM_RESET', error, responseStarted: false, requestSent: true });
      return false;
    }
    // Appended, not set: the server's own Set-Cookie stays beside a sticky cookie.
    const extra = this.req.extraResponseHeaders;
    // A body that ends when the server closes, or an answer that came before the whole request body
    // (the rest of which is never read): the client connection cannot carry another request.
    if (head.closeDelimited || !requestDone) res.shouldKeepAlive = false;
    // A chunked body goes to an HTTP/1.1 client with the server's chunk framing, when nothing transforms it.
    const framed = head.length === -1 && res.passChunkFraming?.() === true;
    if (res.writeUpstreamHead) res.writeUpstreamHead(head, extra && appendHeaders([], extra));
    else {
      const list = responseHeadersFromRaw(head.headers);
      if (extra) appendHeaders(list, extra);
      // HTTP/2 has no reason phrase (Node warns when given one).
      res.writeHead(head.status, res.req?.httpVersionMajor === 2 ? undefined : head.reason || undefined, list);
    }
    this.responseStarted = true;
    return framed;
  }

  onData(chunk: Buffer): boolean {
    if (this.settled) return true;
    this.bytesOut += chunk.length;
    if (this.res.write(chunk)) return true;
    if (!this.waitingForDrain) {
      this.waitingForDrain = true;
      this.res.once('drain', this.resumeOnDrain());
    }
    return false;
  }

  chunkReleased(): boolean {
    return this.res.writableLength === 0;
  }

  copiesChunk(length: number): boolean {
    // A settled attempt drops what it is given.
    return this.settled || this.res.copiesWrite?.(length) === true;
  }

  onEnd(): void {
    if (this.settled) return;
    this.res.end();
    this.settle(this);
  }

  onError(error: Error & { code?: string }, requestSent: boolean): void {
    this.settle({ kind: 'failed', code: classifyUpstreamError(error), error, responseStarted: this.responseStarted, requestSent: requestSent || this.requestSent });
  }
}

/**
 * Starts one attempt. `listener` hears once, when the response has been streamed to the client,
 * or with the failure; `control` aborts the attempt (client gone, total or per-try timeout).
 */
export function startAttempt(pool: ServerPool, req: AttemptRequest, res: ClientResponse, started: number, control: RequestAbort, listener: AttemptListener): void {
  new Attempt(res, req, started, control, listener).start(pool);
}

/** Appends `[name, value]` pairs to a flat header list, a list value as repeated names. */
export function appendHeaders(list: string[], pairs: readonly [string, string | string[]][]): string[] {
  for (const [name, value] of pairs) {
    if (typeof value === 'string') list.push(name, value);
    else for (const v of value) list.push(name, v);
  }
  return list;
}
