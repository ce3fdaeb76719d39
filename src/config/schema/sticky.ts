/** Sticky sessions: a cookie that keeps a client on the server it first got. */
import { z } from 'zod';
import { cookieName } from '../../balancer/cookie-hash.ts';
import { duration, requestPath, secret } from '../../config-fields.ts';

export const stickySchema = z.strictObject({
  cookie: cookieName().default('velocity_sticky'),
  /** Cookie lifetime (Max-Age); 0 = a session cookie. */
  ttl: duration().default(0),
  // No ';': a path must not smuggle extra attributes into the Set-Cookie header.
  path: requestPath()
    .refine((p) => !p.includes(';'), 'a cookie path cannot contain ;')
    .default('/'),
  http_only: z.boolean().default(true),
  /** `auto` = Secure on TLS listeners only. */
  secure: z.union([z.boolean(), z.literal('auto')]).default('auto'),
  same_site: z.enum(['Lax', 'Strict', 'None']).default('Lax'),
  /** Signs the cookie so clients cannot pick servers; default: derived from the service name (set one in production). */
  secret: secret(z.string().min(16, 'a sticky secret must be at least 16 characters')).optional(),
});

export type StickyConfig = z.output<typeof stickySchema>;
