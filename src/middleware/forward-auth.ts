/**
 * Forward authentication (nginx auth_request, Traefik ForwardAuth, Caddy
 * forward_auth, Envoy ext_authz): a subrequest to an auth service decides. A 2xx
 * lets the request go on with the chosen headers of the auth answer copied onto
 * it; any other answer goes back to the client as the auth service gave it (a
 * 401 with its WWW-Authenticate, a 302 to a login page). A slow or dead auth
 * service fails closed: 503 within `timeout`.
 */
import { Buffer } from 'node:buffer';
import type { Dispatcher } from 'undici';
import { z } from 'zod';
import { positiveDuration } from '../config-fields.ts';
import { undiciClient } from '../optional-module.ts';
import type { Middleware, MiddlewareContext, Reply } from './middleware.ts';

const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'expected a header name')
  .transform((n) => n.toLowerCase());

export const forwardAuthOptions = z.strictObject({
  /** The auth endpoint, e.g. http://127.0.0.1:9000/verify */
  url: z
    .string()
    .regex(/^https?:\/\/\S+$/, 'expected an http:// or https:// URL')
    .refine((u) => URL.canParse(u), { message: 'expected an http:// or https:// URL' }),
  timeout: positiveDuration().default(2_000),
  /** Request headers sent to the auth service (X-Forwarded-Method/-Proto/-Host/-Uri/-For always are). */
  forward_headers: z.array(headerName).default(['authorization', 'cookie']),
  /** Headers of a 2xx auth answer copied onto the request to the server. */
  copy_headers: z.array(headerName).default([]),
});

/** Headers of a refusal that the client needs (challenge, login redirect, session). */
const REFUSAL_HEADERS = ['www-authenticate', 'location', 'set-cookie', 'content-type'];
const MAX_REFUSAL_BODY = 64 * 1024;

export function forwardAuth(o: z.output<typeof forwardAuthOptions>, context: MiddlewareContext): Middleware {
  const { request } = undiciClient();
  const unavailable = (why: string): Reply => {
    context.warn(`forward auth ${o.url}: ${why}; refused with 503`);
    return { status: 503, code: 'AUTH_UNAVAILABLE', headers: ['content-type', 'text/plain; charset=utf-8', 'retry-after', '1'], body: '503 Authentication service unavailable\n' };
  };
  return {
    async request(req) {
      const headers: Record<string, string> = {
        'x-forwarded-method': req.method,
        'x-forwarded-proto': req.proto,
        'x-forwarded-host': req.host,
        'x-forwarded-uri': req.url,
        'x-forwarded-for': req.clientIp,
        'x-request-id': req.requestId,
      };
      // Indexed: options come from the frozen config, and for-of over a frozen array allocates its iterator per request.
      for (let k = 0; k < o.forward_headers.length; k++) {
        const name = o.forward_headers[k] as string;
        const value = req.header(name);
        if (value !== undefined) headers[name] = value;
      }
      const signal = AbortSignal.timeout(o.timeout);
      let answer: Dispatcher.ResponseData;
      let body: Buffer;
      try {
        answer = await request(o.url, { method: 'GET', headers, dispatcher: context.http, signal, headersTimeout: o.timeout, bodyTimeout: o.timeout });
        body = await readCapped(answer.body, MAX_REFUSAL_BODY);
      } catch (err) {
        return unavailable(signal.aborted ? `no answer within ${o.timeout} ms` : (err as Error).message);
      }
      if (answer.statusCode >= 200 && answer.statusCode < 300) {
        for (let k = 0; k < o.copy_headers.length; k++) {
          const name = o.copy_headers[k] as string;
          const value = answer.headers[name];
          if (value === undefined) req.removeHeader(name);
          else req.setHeader(name, Array.isArray(value) ? value.join(', ') : value);
        }
        return undefined;
      }
      if (answer.statusCode >= 500) return unavailable(`it answered ${answer.statusCode}`);
      const out: string[] = [];
      for (const name of REFUSAL_HEADERS) {
        const value = answer.headers[name];
        if (value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) out.push(name, v);
      }
      return { status: answer.statusCode, headers: out, body };
    },
  };
}

/** The body up to `max` bytes; the rest is dropped. */
async function readCapped(body: AsyncIterable<Buffer> & { destroy(): unknown }, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    if (size + chunk.length > max) {
      chunks.push(chunk.subarray(0, max - size));
      body.destroy();
      break;
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  return Buffer.concat(chunks);
}
