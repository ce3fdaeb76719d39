/**
 * The attempt loop of tunnels (WebSocket upgrades, TCP connections): take a lease
 * on a server not tried yet, connect, and on a failed connect end the lease as a
 * failure and try the next server — while attempts remain, nothing was sent, the
 * client is still there and some other server could take it. HTTP requests have
 * their own loop (proxy/handler.ts): they also retry on statuses, spend a retry
 * budget and back off.
 */
import type { ErrorCode } from '../errors.ts';
import { VelocityError } from '../errors.ts';
import type { Lease } from './lease.ts';
import type { UpstreamServer } from './server.ts';
import type { ServiceRuntime } from './service.ts';

export type ConnectResult<T> = { connected: T } | { error: Error; code: ErrorCode; sent: boolean };

export interface ConnectLoop<T> {
  service: ServiceRuntime;
  /** A lease on a server not in `tried`, the error to answer with, or undefined when none can take it. */
  pick(tried: ReadonlySet<UpstreamServer>): Lease | VelocityError | undefined | Promise<Lease | VelocityError>;
  connect(lease: Lease): Promise<ConnectResult<T>>;
  /** Whether to stop trying (the client went away). */
  stopped(): boolean;
  /** Told of each lease before its connect (the access-log record names the server). */
  onAttempt?(lease: Lease): void;
  /** Told of each failed connect. */
  onFailure?(lease: Lease, error: Error): void;
}

export type Connected<T> =
  | { kind: 'connected'; lease: Lease; value: T; retries: number }
  /** Every attempt failed; the last failure. */
  | { kind: 'failed'; error: Error; code: ErrorCode; retries: number }
  /** Picking answered an error (queue full, no healthy server). */
  | { kind: 'refused'; error: VelocityError; retries: number }
  /** No server could take it. */
  | { kind: 'none'; retries: number };

export async function connectFirst<T>(loop: ConnectLoop<T>): Promise<Connected<T>> {
  const tried = new Set<UpstreamServer>();
  const attempts = loop.service.config.retries.attempts;
  let failed: Extract<Connected<T>, { kind: 'failed' }> | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const picked = loop.pick(tried);
    const lease = picked instanceof Promise ? await picked : picked;
    if (lease === undefined) break;
    if (lease instanceof VelocityError) return { kind: 'refused', error: lease, retries: attempt - 1 };
    tried.add(lease.server);
    loop.onAttempt?.(lease);
    let result: ConnectResult<T> | undefined;
    try {
      result = await loop.connect(lease);
    } finally {
      // A connect that threw says nothing about the server, but the lease is still given back.
      if (!result) lease.end();
    }
    if ('connected' in result) return { kind: 'connected', lease, value: result.connected, retries: attempt - 1 };
    lease.end({ kind: 'failed', code: result.code, error: result.error, responseStarted: false, requestSent: result.sent });
    loop.onFailure?.(lease, result.error);
    failed = { kind: 'failed', error: result.error, code: result.code, retries: attempt - 1 };
    if (result.sent || loop.stopped() || !loop.service.hasAvailableServer(tried)) break;
  }
  return failed ?? { kind: 'none', retries: 0 };
}
