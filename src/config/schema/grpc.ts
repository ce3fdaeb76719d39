/** HTTP/2 sessions toward servers, and what Velocity may do with gRPC calls. */
import { z } from 'zod';
import { duration, positiveDuration, positiveInt } from '../../config-fields.ts';

export const http2SessionsSchema = z.strictObject({
  /** Streams Velocity opens on one connection to a server (lower if the server says so); more calls open more connections. */
  max_streams: positiveInt().default(100),
  /** Connections per server at most; past max_streams × this, calls share the least busy connection and wait there for a stream. */
  max_sessions: positiveInt().default(16),
  /** A PING is sent after this much silence on a connection; 0 is not allowed (dead connections must be found). */
  ping_interval: positiveDuration().default(10_000),
  /** No PING answer within this: the connection is closed and its calls fail (20 s, gRPC's keepalive default: a busy server is not a dead one). */
  ping_timeout: positiveDuration().default(20_000),
  /** A connection with no open stream for this long is closed. */
  idle_timeout: positiveDuration().default(60_000),
});

/** `/package.Service/Method`, or `/package.Service/*` for every method of a service. */
const methodPattern = z.string().regex(/^\/[\w.]+\/(\*|[\w]+)$/, 'expected /package.Service/Method or /package.Service/*');

export const grpcSchema = z.strictObject({
  /** Methods safe to send again (idempotent): a call answered UNAVAILABLE by a server is retried on another. */
  retry_on_unavailable: z.array(methodPattern).default([]),
  /** Longest deadline a call gets when the client sends none (grpc-timeout); 0 = only the service's timeouts. */
  default_timeout: duration().default(0),
});

export type Http2SessionsConfig = z.output<typeof http2SessionsSchema>;
export type GrpcConfig = z.output<typeof grpcSchema>;
