/**
 * CORS (Envoy cors, Traefik Headers accessControl*, the Caddy/nginx recipes): a
 * preflight (OPTIONS with Access-Control-Request-Method) is answered here from
 * config and never reaches the server; other requests from an allowed origin get
 * the Access-Control-Allow-* headers on their response. A disallowed origin gets
 * no CORS headers, so the browser refuses the response.
 */
import { z } from 'zod';
import { duration } from '../config-fields.ts';
import { addToken, removeHeader, setHeader } from './head.ts';
import type { Middleware } from './middleware.ts';

export const corsOptions = z.strictObject({
  /** Exact origins (https://app.example.com) or "*" for any. */
  origins: z.array(z.string().regex(/^(\*|https?:\/\/[^\s/]+)$/, 'expected "*" or an origin such as https://app.example.com')).min(1),
  methods: z
    .array(
      z
        .string()
        .regex(/^[A-Za-z]+$/)
        .transform((m) => m.toUpperCase()),
    )
    .default(['GET', 'HEAD', 'POST']),
  headers: z.array(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/)).default([]),
  expose_headers: z.array(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/)).default([]),
  credentials: z.boolean().default(false),
  max_age: duration().default(600_000),
});

export function cors(o: z.output<typeof corsOptions>): Middleware {
  const any = o.origins.includes('*');
  const allowed = new Set(o.origins.map((x) => x.toLowerCase()));
  const allowedHeaders = new Set(o.headers.map((h) => h.toLowerCase()));
  const methods = o.methods.join(', ');
  const allowOrigin = (origin: string | undefined): string | undefined => {
    if (!origin) return undefined;
    if (allowed.has(origin.toLowerCase())) return origin;
    // With credentials the browser refuses "*": echo the origin instead.
    if (any) return o.credentials ? origin : '*';
    return undefined;
  };
  const common = (list: string[], origin: string) => {
    setHeader(list, 'access-control-allow-origin', origin);
    if (origin !== '*') addToken(list, 'vary', 'Origin');
    if (o.credentials) setHeader(list, 'access-control-allow-credentials', 'true');
  };
  return {
    request(req) {
      if (req.method !== 'OPTIONS' || req.header('access-control-request-method') === undefined) return undefined;
      const origin = allowOrigin(req.header('origin'));
      const headers: string[] = ['content-length', '0'];
      if (origin) {
        common(headers, origin);
        const wanted = req.header('access-control-request-headers');
        const names = wanted
          ? wanted
              .split(',')
              .map((h) => h.trim().toLowerCase())
              .filter(Boolean)
          : [];
        // Only the configured headers are allowed; the browser checks the list against what it asked.
        const granted = names.filter((h) => allowedHeaders.has(h));
        headers.push('access-control-allow-methods', methods, 'access-control-max-age', String(Math.floor(o.max_age / 1000)));
        if (granted.length > 0) headers.push('access-control-allow-headers', granted.join(', '));
        addToken(headers, 'vary', 'Access-Control-Request-Headers');
      }
      return { status: 204, headers };
    },
    response(req, head) {
      const origin = allowOrigin(req.header('origin'));
      if (!origin) return;
      // A server's own CORS answer is replaced: one policy, the one in the config.
      removeHeader(head.headers, 'access-control-allow-origin');
      common(head.headers, origin);
      if (o.expose_headers.length > 0) setHeader(head.headers, 'access-control-expose-headers', o.expose_headers.join(', '));
    },
  };
}
