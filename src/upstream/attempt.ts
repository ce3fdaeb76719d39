/**
 * What one attempt at a server ended with, as every protocol (HTTP, WebSocket,
 * TCP) reports it to the server's lease: the words passive health, the circuit
 * breaker and the retry loop share.
 */
import type { ErrorCode } from '../errors.ts';

/** A response passed on to the client (whole, or cut short when `complete` is false). */
export interface ResponseOutcome {
  readonly kind: 'response';
  readonly status: number;
  readonly bytesOut: number;
  readonly firstByteMs: number;
  readonly complete: boolean;
}

export type AttemptOutcome =
  | ResponseOutcome
  | { kind: 'retryable-status'; status: number; firstByteMs: number }
  | { kind: 'failed'; code: ErrorCode; error: Error; responseStarted: boolean; requestSent: boolean };

/** The client went away: the attempt ends, and it is nobody's fault on the server side. */
export function clientGoneError(): Error {
  return Object.assign(new Error('client closed the connection'), { code: 'VELOCITY_CLIENT_GONE' });
}

/** Methods a failed attempt may send again (RFC 9110 §9.2.2: idempotent), for every protocol's retry loop. */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export function isClientGone(err: unknown): boolean {
  return (err as { code?: unknown } | undefined)?.code === 'VELOCITY_CLIENT_GONE';
}
