/**
 * Sends one attempt of a request to one server through undici's dispatch API and
 * streams the answer into the client response, with backpressure both ways.
 * Decides nothing about retries: it reports what happened, and whether the client
 * response was already started (after which nothing can be retried).
 */
import type { Readable } from 'node:stream';
import { type Dispatcher, Pool } from 'undici';
import type { ErrorCode } from '../errors.ts';
import { type AttemptOutcome, clientGoneError } from '../upstream/attempt.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import type { ClientResponse } from './client-response.ts';
import { responseHeadersForClient } from './headers.ts';
import { isTlsFailure, tlsConnectOptions, type UpstreamTlsOptions } from './upstream-tls.ts';

export interface AttemptTimeouts {
  responseHeader: number;
  idle: number;
}

export interface AttemptRequest {
  method: string;
  path: string;
  headers: string[];
  body: Buffer | Readable | null;
  timeouts: AttemptTimeouts;
  /** Statuses that should not be passed to the client when another try is possible. */
  retryStatuses: ReadonlySet<number> | undefined;
  /** Extra response headers Velocity adds (sticky cookies, rate-limit headers). */
  extraResponseHeaders: [string, string | string[]][] | undefined;
}

/** undici errors that mean no byte of the request reached the server. */
const NOT_SENT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'EADDRNOTAVAIL', 'ECONNABORTED_CONNECT']);

export function classifyUpstreamError(err: Error & { code?: string }): ErrorCode {
  if (isTlsFailure(err.code)) return 'UPSTREAM_TLS_FAILED';
  switch (err.code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'VELOCITY_ATTEMPT_TIMEOUT':
      return 'UPSTREAM_TIMEOUT';
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EADDRNOTAVAIL':
      return 'UPSTREAM_CONNECT_FAILED';
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
    case 'UND_ERR_CLOSED':
      return 'UPSTREAM_RESET';
    default:
      // undici's HTTPParserError carries no code, only its name.
      return err.name === 'HTTPParserError' ||
        err.code?.startsWith('HPE_') ||
        err.code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' ||
        err.code === 'UND_ERR_HEADERS_OVERFLOW' ||
        err.code === 'UND_ERR_INFO'
        ? 'UPSTREAM_BAD_RESPONSE'
        : 'UPSTREAM_RESET';
  }
}

export interface UpstreamPoolOptions {
  connectTimeout: number;
  keepAliveTimeout: number;
  /** TLS settings for https:// servers. */
  tls?: UpstreamTlsOptions;
}

/** Keep-alive connection pools, one per server, owned by one thread. */
export class UpstreamPools {
  private readonly pools = new Map<string, Pool>();
  /** The TLS settings each https pool was made with: changed settings (a reload) get a new pool. */
  private readonly tlsOf = new Map<string, UpstreamTlsOptions>();

  get(server: UpstreamServer, options: UpstreamPoolOptions): Pool {
    const key = server.url;
    let pool = this.pools.get(key);
    if (pool && server.tls && this.tlsOf.get(key) !== options.tls) {
      void pool.close().catch(() => undefined);
      pool = undefined;
    }
    if (!pool) {
      if (server.tls && options.tls) this.tlsOf.set(key, options.tls);
      pool = new Pool(server.url, {
        connectTimeout: options.connectTimeout,
        keepAliveTimeout: options.keepAliveTimeout,
        // Velocity enforces its own per-request timeouts; these are per dispatch.
        headersTimeout: 0,
        bodyTimeout: 0,
        pipelining: 1,
        maxHeaderSize: 32 * 1024,
        connect: server.tls && options.tls ? tlsConnectOptions(options.tls, server.host) : undefined,
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Closes pools of servers no longer in use (after they drained). */
  async retain(urls: ReadonlySet<string>): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const [url, pool] of this.pools) {
      if (!urls.has(url)) {
        this.pools.delete(url);
        this.tlsOf.delete(url);
        closing.push(pool.close().catch(() => undefined));
      }
    }
    await Promise.all(closing);
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.destroy().catch(() => undefined)));
    this.pools.clear();
  }
}

/**
 * One attempt. Resolves when the response has been streamed to the client, or
 * with the failure; `signal` aborts the attempt (client gone, total timeout).
 */
export function forwardAttempt(pool: Pool, req: AttemptRequest, res: ClientResponse, started: number, signal: AbortSignal): Promise<AttemptOutcome> {
  return new Promise<AttemptOutcome>((resolve) => {
    let controller: Dispatcher.DispatchController | undefined;
    let responseStarted = false;
    let requestSent = false;
    let settled = false;
    let bytesOut = 0;
    let firstByteMs = 0;
    let status = 0;
    let retrying = false;

    const settle = (outcome: AttemptOutcome) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      res.removeListener('drain', onDrain);
      resolve(outcome);
    };
    const onAbort = () => {
      const reason = signal.reason instanceof Error ? signal.reason : new Error('aborted');
      controller?.abort(reason);
      settle({ kind: 'failed', code: classifyUpstreamError(reason), error: reason, responseStarted, requestSent });
    };
    const onDrain = () => controller?.resume();
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });

    pool.dispatch(
      {
        path: req.path,
        method: req.method as Dispatcher.HttpMethod,
        headers: req.headers,
        body: req.body,
        headersTimeout: req.timeouts.responseHeader,
        bodyTimeout: req.timeouts.idle,
        // Velocity decides retries itself; undici must not replay requests on its own.
        idempotent: false,
        blocking: true,
      },
      {
        onRequestStart(c) {
          controller = c;
        },
        onBodySent() {
          requestSent = true;
        },
        onRequestSent() {
          requestSent = true;
        },
        onResponseStart(c, statusCode, headers, statusMessage) {
          requestSent = true;
          status = statusCode;
          firstByteMs = performance.now() - started;
          if (req.retryStatuses?.has(statusCode)) {
            retrying = true;
            c.abort(Object.assign(new Error('retryable status'), { code: 'VELOCITY_RETRY_STATUS' }));
            settle({ kind: 'retryable-status', status: statusCode, firstByteMs });
            return;
          }
          if (res.destroyed) {
            // Says nothing about the server: not a failure for passive health or the breaker.
            c.abort(clientGoneError());
            return;
          }
          const list = responseHeadersForClient(headers as Record<string, string | string[] | undefined>);
          // Appended, not set: the server's own Set-Cookie stays beside a sticky cookie.
          if (req.extraResponseHeaders) appendHeaders(list, req.extraResponseHeaders);
          // One writeHead with the whole list; HTTP/2 has no reason phrase (Node warns when given one).
          res.writeHead(statusCode, res.req?.httpVersionMajor === 2 ? undefined : statusMessage || undefined, list);
          responseStarted = true;
        },
        onResponseData(c, chunk) {
          bytesOut += chunk.length;
          if (!res.write(chunk)) {
            c.pause();
            res.once('drain', onDrain);
          }
        },
        onResponseEnd() {
          res.end();
          settle({ kind: 'response', status, bytesOut, firstByteMs, complete: true });
        },
        onResponseError(_c, err: Error & { code?: string }) {
          if (retrying) return;
          settle({
            kind: 'failed',
            code: classifyUpstreamError(err),
            error: err,
            responseStarted,
            requestSent: requestSent || !(NOT_SENT.has(err.code ?? '') || isTlsFailure(err.code)),
          });
        },
      },
    );
  });
}

/** Appends `[name, value]` pairs to a flat header list, a list value as repeated names. */
export function appendHeaders(list: string[], pairs: readonly [string, string | string[]][]): void {
  for (const [name, value] of pairs) {
    if (typeof value === 'string') list.push(name, value);
    else for (const v of value) list.push(name, v);
  }
}
