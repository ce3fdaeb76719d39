/**
 * Strips a path prefix before the server sees the path (Traefik StripPrefix, Caddy
 * uri strip_prefix, nginx `proxy_pass http://b/;`), and tells the server what was
 * stripped in X-Forwarded-Prefix so it can build links.
 */
import { z } from 'zod';
import type { Middleware } from './middleware.ts';
import { cleanPath, splitUrl } from './path.ts';

export const stripPrefixOptions = z.strictObject({
  /** The first that matches (on a segment boundary) is stripped. */
  prefixes: z.array(z.string().regex(/^\/[\x21-\x7e]*$/, 'a path prefix starting with /')).min(1),
  forwarded_prefix: z.boolean().default(true),
});

export function stripPrefix(o: z.output<typeof stripPrefixOptions>): Middleware {
  const prefixes = o.prefixes.map((p) => (p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p)).sort((a, b) => b.length - a.length);
  return {
    request(req) {
      const { path, query } = splitUrl(req.url);
      for (const prefix of prefixes) {
        if (path === prefix || path.startsWith(prefix === '/' ? '/' : `${prefix}/`)) {
          req.setUrl(cleanPath(path.slice(prefix.length)) + query);
          if (o.forwarded_prefix) req.setHeader('x-forwarded-prefix', prefix);
          return undefined;
        }
      }
      return undefined;
    },
  };
}
