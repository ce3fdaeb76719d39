/** Header rules for both directions of the proxy. */

import { equalsLower } from '../ascii-case.ts';
import { HOP_BY_HOP } from '../hop-by-hop.ts';

export { HOP_BY_HOP };

/** Headers Velocity sets itself toward the server; a client's copies are dropped. */
export const SET_BY_PROXY = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id', 'forwarded', 'x-real-ip']);

/**
 * Membership in a set of lower-case names for a name in any case, without lower-casing it: the
 * names are grouped by length, so most names are told apart by their length alone.
 */
function nameSet(names: ReadonlySet<string>): (name: string) => boolean {
  const byLength: string[][] = [];
  for (const n of names) (byLength[n.length] ??= []).push(n);
  for (let k = 0; k < byLength.length; k++) byLength[k] ??= [];
  return (name) => {
    const list = byLength[name.length];
    if (list === undefined) return false;
    for (let k = 0; k < list.length; k++) if (equalsLower(name, list[k] as string)) return true;
    return false;
  };
}

/** HOP_BY_HOP.has(name.toLowerCase()), without the lower-cased copy. */
export const isHopByHop = nameSet(HOP_BY_HOP);
/** SET_BY_PROXY.has(name.toLowerCase()), without the lower-cased copy. */
const isSetByProxy = nameSet(SET_BY_PROXY);

/** Headers a Connection value names beyond the hop-by-hop ones (removed anyway); undefined when none. */
function connectionListed(value: string | undefined): Set<string> | undefined {
  if (!value) return undefined;
  // The usual values ("keep-alive", "close") name nothing more: no set to build on every request.
  if (equalsLower(value, 'keep-alive') || equalsLower(value, 'close')) return undefined;
  const names = new Set<string>();
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase();
    if (name) names.add(name);
  }
  return names;
}

/** Whether a Connection value names headers beyond the hop-by-hop ones, which must then be dropped too. */
export function namesMoreHeaders(connection: string): boolean {
  return connectionListed(connection) !== undefined;
}

/**
 * Builds the flat header list for the server from the client's raw headers:
 * hop-by-hop and Connection-listed headers removed, forwarding headers set.
 * `forwardedFor` is the X-Forwarded-For value to send (RequestContext.forwardedFor); `proto`, `host`
 * and `requestId` go out as X-Forwarded-Proto, X-Forwarded-Host (and Host when the client named none)
 * and X-Request-Id. Plain arguments, not an object of them: one object less per request.
 */
export function requestHeadersForUpstream(raw: readonly string[], forwardedFor: string, proto: 'http' | 'https', host: string, requestId: string): string[] {
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (equalsLower(raw[i] as string, 'connection')) {
      listed = connectionListed(raw[i + 1]);
      break;
    }
  }
  const out: string[] = [];
  let hasHost = false;
  let cookieAt = -1;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    // HTTP/2 pseudo-headers (:method, :authority, …) never go to an HTTP/1.1 server.
    if (name.charCodeAt(0) === 58 || isHopByHop(name) || isSetByProxy(name) || listed?.has(name.toLowerCase())) continue;
    if (equalsLower(name, 'host')) hasHost = true;
    else if (equalsLower(name, 'cookie')) {
      if (cookieAt >= 0) {
        // HTTP/2 clients send each cookie as its own field; HTTP/1.1 wants one header joined by "; " (RFC 9113 §8.2.3).
        out[cookieAt] = `${out[cookieAt]}; ${raw[i + 1]}`;
        continue;
      }
      cookieAt = out.length + 1;
    }
    out.push(name, raw[i + 1] as string);
  }
  // An HTTP/2 client names the host in :authority only; HTTP/1.1 needs a Host header.
  if (!hasHost && host) out.push('host', host);
  out.push('x-forwarded-for', forwardedFor, 'x-forwarded-proto', proto, 'x-forwarded-host', host, 'x-request-id', requestId);
  return out;
}

/**
 * Response headers for the client from a server's flat raw list (names as the
 * server wrote them, repeats kept): hop-by-hop and Connection-listed ones removed.
 */
export function responseHeadersFromRaw(raw: readonly string[]): string[] {
  let listed: Set<string> | undefined;
  let hop = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (!isHopByHop(name)) continue;
    hop = true;
    if (equalsLower(name, 'connection')) {
      const more = connectionListed(raw[i + 1]);
      if (more) for (const n of more) (listed ??= new Set()).add(n);
    }
  }
  // The usual answer names no hop-by-hop header: its list is passed on as it is.
  if (!hop) return raw as string[];
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (isHopByHop(name) || listed?.has(name.toLowerCase())) continue;
    out.push(name, raw[i + 1] as string);
  }
  return out;
}
