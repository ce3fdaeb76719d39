/**
 * Sticky sessions, usable with any policy: the cookie names the server by an
 * HMAC of its id (not its address), so a client cannot forge a choice of server.
 * A cookie that is forged, stale, or names a server that is not usable now is
 * simply ignored: the policy picks, and the cookie is rewritten.
 */
import { createHmac } from 'node:crypto';
import type { StickyConfig } from '../config/schema/sticky.ts';

/** What a cookie can name: a server by its stable id (name, else host:port). */
interface Named {
  readonly id: string;
}

const tokens = new WeakMap<Named, { secret: string; token: string }>();

/**
 * The HMAC key: the configured secret, else one derived from the service name — the
 * same on every thread, restart and instance, but guessable, so set `secret` when
 * server ids must not be confirmable from a cookie.
 */
export function stickySecret(service: string, sticky: StickyConfig): string {
  return sticky.secret ?? `velocity-sticky:${service}`;
}

/** The opaque cookie value for a server. */
export function stickyToken(server: Named, secret: string): string {
  const cached = tokens.get(server);
  if (cached && cached.secret === secret) return cached.token;
  const token = createHmac('sha256', secret).update(server.id).digest('base64url').slice(0, 22);
  tokens.set(server, { secret, token });
  return token;
}

/** The server a sticky cookie value names, if any. */
export function stickyTarget<T extends Named>(servers: readonly T[], value: string | undefined, secret: string): T | undefined {
  if (value?.length !== 22) return undefined;
  return servers.find((s) => stickyToken(s, secret) === value);
}

export function stickySetCookie(sticky: StickyConfig, value: string, tls: boolean): string {
  const parts = [`${sticky.cookie}=${value}`, `Path=${sticky.path}`, `SameSite=${sticky.same_site}`];
  if (sticky.ttl > 0) parts.push(`Max-Age=${Math.round(sticky.ttl / 1000)}`);
  if (sticky.http_only) parts.push('HttpOnly');
  if (sticky.secure === true || (sticky.secure === 'auto' && tls) || sticky.same_site === 'None') parts.push('Secure');
  return parts.join('; ');
}
