/**
 * HTTP Basic authentication (nginx auth_basic, Traefik BasicAuth, Caddy basic_auth)
 * against bcrypt or argon2 hashes; a plain-text password is a config error. Every
 * check runs one hash verification — an unknown user against a decoy hash — so the
 * answer time says nothing about which users exist. Verified credentials are kept
 * in a small per-thread cache under a keyed digest (never the password), compared
 * in constant time, so a busy API does not pay a bcrypt per request.
 */
import { Buffer } from 'node:buffer';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type * as HashWasm from 'hash-wasm';
import { z } from 'zod';
import { optionalModule } from '../optional-module.ts';
import type { Middleware, Reply } from './middleware.ts';

/** bcrypt and argon2 in WebAssembly, loaded when a config first has a basic_auth middleware. */
const hashWasm = optionalModule<typeof HashWasm>('hash-wasm', 'basic_auth');

const BCRYPT = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;
const ARGON2 = /^\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;

const passwordHash = z.string().refine((h) => BCRYPT.test(h) || ARGON2.test(h), {
  message: 'expected a bcrypt ($2b$…) or argon2 ($argon2id$…) hash; plain-text passwords are refused (make one with: htpasswd -nbB USER PASSWORD)',
});

export const basicAuthOptions = z.strictObject({
  /** User name → bcrypt or argon2 hash. */
  users: z.record(z.string().regex(/^[^:\r\n]+$/, 'a user name without ":"'), passwordHash).refine((u) => Object.keys(u).length > 0, { message: 'at least one user' }),
  realm: z
    .string()
    .regex(/^[^"\\\r\n]*$/, 'a realm without quotes or line breaks')
    .default('Restricted'),
  /** Whether the Authorization header goes on to the server. */
  forward_header: z.boolean().default(false),
});

/** Hashes of "decoy" so that an unknown user costs one verification too. */
const DECOY_BCRYPT = '$2a$10$/uaF/uaF/uaF/uaF/uaF/ud3F1gllu0o0DFRybVZzczxwG/rejnh6';
const CACHE_LIMIT = 1000;

function verify(hashes: typeof HashWasm, password: string, hash: string): Promise<boolean> {
  return (BCRYPT.test(hash) ? hashes.bcryptVerify({ password, hash }) : hashes.argon2Verify({ password, hash })).catch(() => false);
}

export function basicAuth(o: z.output<typeof basicAuthOptions>): Middleware {
  const hashes = hashWasm();
  const users = new Map(Object.entries(o.users));
  const key = randomBytes(32);
  const verified = new Map<string, Buffer>();
  const digest = (user: string, password: string) => createHmac('sha256', key).update(user).update('\0').update(password).digest();
  const refuse = (): Reply => ({
    status: 401,
    code: 'AUTH_REQUIRED',
    headers: ['www-authenticate', `Basic realm="${o.realm}", charset="UTF-8"`, 'content-type', 'text/plain; charset=utf-8'],
    body: '401 Authentication required\n',
  });
  return {
    async request(req) {
      const header = req.header('authorization');
      if (!header || !/^basic /i.test(header)) return refuse();
      const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) return refuse();
      const user = decoded.slice(0, colon);
      const password = decoded.slice(colon + 1);
      const mac = digest(user, password);
      const cached = verified.get(user);
      let ok = cached !== undefined && timingSafeEqual(cached, mac);
      if (!ok) {
        const hash = users.get(user);
        const matches = await verify(hashes, password, hash ?? DECOY_BCRYPT);
        ok = matches && hash !== undefined;
        if (ok) {
          if (verified.size >= CACHE_LIMIT) verified.delete(verified.keys().next().value as string);
          verified.set(user, mac);
        }
      }
      if (!ok) return refuse();
      if (!o.forward_header) req.removeHeader('authorization');
      return undefined;
    },
  };
}
