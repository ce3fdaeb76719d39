/**
 * Checks on an HTTP/1.x request head that Node's parser leaves to the
 * application, so Velocity and the server behind it always agree on which host
 * and target a request names (RFC 9112 §3.2, §3.2.2; Kettle 2017 host-header attacks).
 */
import type { IncomingMessage } from 'node:http';

/** A reg-name, IPv4 or bracketed IPv6 literal, with an optional port (RFC 3986 §3.2.2). */
const HOST = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=%]+|\[[0-9A-Fa-f:.]+\])(?::\d{0,5})?$/;
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)(.*)$/i;

/**
 * Returns why the head is refused (→ 400), or undefined. An absolute-form target
 * is rewritten in place to origin-form, with its authority as the Host: the
 * server must ignore Host then (RFC 9112 §3.2.2), so Velocity routes by it too.
 */
export function checkRequestHead(req: IncomingMessage): string | undefined {
  if (req.httpVersionMajor !== 1) return undefined;
  const raw = req.rawHeaders;
  let hostAt = -1;
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).length === 4 && (raw[i] as string).toLowerCase() === 'host') {
      if (hostAt >= 0) return 'more than one Host header';
      hostAt = i + 1;
    }
  }
  if (hostAt < 0 && req.httpVersionMinor >= 1) return 'missing Host header';
  if (hostAt >= 0 && raw[hostAt] !== '' && !HOST.test(raw[hostAt] as string)) return 'invalid Host header';
  const target = req.url ?? '';
  if (target.startsWith('/') || (target === '*' && req.method === 'OPTIONS')) return undefined;
  const absolute = ABSOLUTE_FORM.exec(target);
  if (!absolute) return 'invalid request target';
  const authority = absolute[1] as string;
  if (!HOST.test(authority)) return 'invalid authority in the request target';
  const rest = absolute[2] as string;
  req.url = rest.startsWith('/') ? rest : `/${rest}`;
  req.headers.host = authority;
  if (hostAt >= 0) raw[hostAt] = authority;
  else raw.push('Host', authority);
  return undefined;
}
