/**
 * Rewrites the path by a regular expression with captures (Traefik ReplacePathRegex,
 * nginx `rewrite … break`, Caddy `uri path_regexp`): `$1`, `$<name>` in the replacement.
 * The query is kept unless the replacement brings its own.
 */
import { z } from 'zod';
import { regexText } from '../config-fields.ts';
import type { Middleware } from './middleware.ts';
import { cleanPath, splitUrl } from './path.ts';

export const replacePathOptions = z.strictObject({
  regex: regexText(),
  replacement: z.string().regex(/^[\x21-\x7e]*$/, 'visible characters only (no spaces)'),
});

export function replacePath(o: z.output<typeof replacePathOptions>): Middleware {
  const regex = new RegExp(o.regex);
  return {
    request(req) {
      const { path, query } = splitUrl(req.url);
      if (!regex.test(path)) return undefined;
      const replaced = path.replace(regex, o.replacement);
      req.setUrl(replaced.includes('?') ? cleanPath(replaced) : cleanPath(replaced) + query);
      return undefined;
    },
  };
}
