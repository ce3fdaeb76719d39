/**
 * Redirects (nginx `return 301` / `rewrite … permanent`, Traefik RedirectRegex and
 * RedirectScheme, Caddy redir): either a regular expression over the whole URL
 * (scheme://host/path?query) to a target with $1 captures, or a new scheme, host
 * or port for the same path. Requests that do not match go on.
 */
import { z } from 'zod';
import { regexText } from '../config-fields.ts';
import type { Middleware, Reply } from './middleware.ts';

export const redirectOptions = z
  .strictObject({
    /** Matched against the full URL, e.g. ^https?://old\.example\.com/(.*)$ */
    regex: regexText().optional(),
    /** Target with $1 or $<name> captures (and ${host}-free: captures only). */
    to: z
      .string()
      .regex(/^[\x21-\x7e]+$/, 'a URL or path without spaces')
      .optional(),
    scheme: z.enum(['http', 'https']).optional(),
    host: z
      .string()
      .regex(/^[A-Za-z0-9.-]+$/, 'a host name')
      .optional(),
    port: z.number().int().min(1).max(65535).optional(),
    status: z.union([z.literal(301), z.literal(302), z.literal(307), z.literal(308)], { error: 'expected 301, 302, 307 or 308' }).default(302),
  })
  .superRefine((o, ctx) => {
    const byRegex = o.regex !== undefined || o.to !== undefined;
    const byParts = o.scheme !== undefined || o.host !== undefined || o.port !== undefined;
    if (byRegex && (o.regex === undefined || o.to === undefined)) ctx.addIssue({ code: 'custom', message: 'a regex redirect needs both regex and to' });
    if (byRegex === byParts) ctx.addIssue({ code: 'custom', message: 'give either regex + to, or scheme / host / port' });
  });

const HOST_PORT = /^(\[[0-9a-f:.]+\]|[^:]+)(?::(\d+))?$/i;

function reply(status: number, location: string): Reply {
  return { status, headers: ['location', location, 'content-type', 'text/plain; charset=utf-8'], body: `Redirecting to ${location}\n` };
}

export function redirect(o: z.output<typeof redirectOptions>): Middleware {
  if (o.regex !== undefined && o.to !== undefined) {
    const regex = new RegExp(o.regex);
    const to = o.to;
    return {
      request(req) {
        const full = `${req.proto}://${req.host}${req.url}`;
        if (!regex.test(full)) return undefined;
        return reply(o.status, full.replace(regex, to));
      },
    };
  }
  return {
    request(req) {
      const m = HOST_PORT.exec(req.host);
      const host = o.host ?? m?.[1] ?? req.host;
      const scheme = o.scheme ?? req.proto;
      const port = o.port ?? (o.scheme !== undefined || o.host !== undefined ? undefined : m?.[2]);
      // Already where the redirect points: go on (a scheme redirect on its own target would loop).
      if (scheme === req.proto && host === (m?.[1] ?? req.host) && (port === undefined ? m?.[2] === undefined : String(port) === m?.[2])) return undefined;
      const defaultPort = scheme === 'https' ? 443 : 80;
      const authority = port === undefined || Number(port) === defaultPort ? host : `${host}:${port}`;
      return reply(o.status, `${scheme}://${authority}${req.url}`);
    },
  };
}
