/** Trace Context on the HTTP/1.1 path: the header slot each attempt fills, and what an attempt's span records. */
import type { AttemptResult } from '../observe/tracing.ts';
import type { AttemptOutcome } from '../upstream/attempt.ts';
import type { UpstreamServer } from '../upstream/server.ts';
import type { RequestContext } from './context.ts';

/**
 * Replaces the client's traceparent/tracestate in a flat header list with
 * Velocity's (the client's tracestate is kept); returns the index of the
 * traceparent value to set per attempt, or -1 when nothing is propagated.
 */
export function traceHeaderSlot(headers: string[], ctx: RequestContext): number {
  const trace = ctx.trace;
  if (!trace || !ctx.propagateTrace) return -1;
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    const name = headers[i] as string;
    if (name.length >= 10 && name.length <= 11) {
      const lower = name.toLowerCase();
      if (lower === 'traceparent' || lower === 'tracestate') headers.splice(i, 2);
    }
  }
  if (trace.tracestate) headers.push('tracestate', trace.tracestate);
  headers.push('traceparent', '');
  return headers.length - 1;
}

export function attemptResultOf(server: UpstreamServer, outcome: AttemptOutcome): AttemptResult {
  if (outcome.kind === 'failed') return { server: server.id, errorCode: outcome.code };
  return { server: server.id, status: outcome.status, firstByteMs: outcome.firstByteMs };
}
