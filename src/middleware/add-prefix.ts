/** Puts a prefix before the path (Traefik AddPrefix, Caddy `rewrite * /v1{uri}`). */
import { z } from 'zod';
import type { Middleware } from './middleware.ts';
import { splitUrl } from './path.ts';

export const addPrefixOptions = z.strictObject({
  prefix: z.string().regex(/^\/[\x21-\x7e]*$/, 'a path prefix starting with /'),
});

export function addPrefix(options: z.output<typeof addPrefixOptions>): Middleware {
  const prefix = options.prefix.replace(/\/+$/, '');
  return {
    request(req) {
      const { path, query } = splitUrl(req.url);
      req.setUrl(`${prefix}${path}${query}`);
      return undefined;
    },
  };
}
