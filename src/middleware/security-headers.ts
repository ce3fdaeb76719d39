/**
 * Security-header presets on every response (Traefik Headers' browser options,
 * Caddy/nginx add_header recipes). A header the server set itself is kept, so an
 * app's own Content-Security-Policy passes through.
 */
import { z } from 'zod';
import { duration } from '../config-fields.ts';
import { headerValue } from './head.ts';
import type { Middleware } from './middleware.ts';

export const securityHeadersOptions = z.strictObject({
  /** Strict-Transport-Security max-age (0 = not sent); sent on HTTPS only. */
  hsts: duration().default(0),
  hsts_include_subdomains: z.boolean().default(false),
  /** X-Content-Type-Options: nosniff. */
  content_type_options: z.boolean().default(true),
  /** X-Frame-Options. */
  frame_options: z.enum(['DENY', 'SAMEORIGIN', 'off']).default('SAMEORIGIN'),
  referrer_policy: z
    .enum([
      'no-referrer',
      'no-referrer-when-downgrade',
      'origin',
      'origin-when-cross-origin',
      'same-origin',
      'strict-origin',
      'strict-origin-when-cross-origin',
      'unsafe-url',
      'off',
    ])
    .default('strict-origin-when-cross-origin'),
  /** Content-Security-Policy for responses that carry none of their own. */
  content_security_policy: z
    .string()
    .regex(/^[^\r\n\0]*$/, 'a header value without line breaks')
    .optional(),
});

export function securityHeaders(o: z.output<typeof securityHeadersOptions>): Middleware {
  const always: [string, string][] = [];
  if (o.content_type_options) always.push(['x-content-type-options', 'nosniff']);
  if (o.frame_options !== 'off') always.push(['x-frame-options', o.frame_options]);
  if (o.referrer_policy !== 'off') always.push(['referrer-policy', o.referrer_policy]);
  if (o.content_security_policy) always.push(['content-security-policy', o.content_security_policy]);
  const hsts = o.hsts > 0 ? `max-age=${Math.floor(o.hsts / 1000)}${o.hsts_include_subdomains ? '; includeSubDomains' : ''}` : undefined;
  return {
    response(req, head) {
      for (const [name, value] of always) if (headerValue(head.headers, name) === undefined) head.headers.push(name, value);
      if (hsts && req.proto === 'https' && headerValue(head.headers, 'strict-transport-security') === undefined) head.headers.push('strict-transport-security', hsts);
    },
  };
}
