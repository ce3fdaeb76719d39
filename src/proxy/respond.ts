/** Responses Velocity writes itself: short body, `x-velocity-error` header naming the code. */
import { Buffer } from 'node:buffer';
import type { VelocityError } from '../errors.ts';
import type { ProxyResponse } from './proxy-message.ts';

export function respondWithError(res: ProxyResponse, error: VelocityError, extraHeaders?: [string, string | string[]][]): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = `${error.status} ${error.message}\n`;
  res.statusCode = error.status;
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.setHeader('x-velocity-error', error.code);
  res.setHeader('cache-control', 'no-store');
  if (error.retryAfter !== undefined) res.setHeader('retry-after', String(Math.max(1, Math.ceil(error.retryAfter))));
  if (extraHeaders) for (const [name, value] of extraHeaders) res.setHeader(name, value);
  res.end(body);
}
