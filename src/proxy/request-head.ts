/**
 * Checks on an HTTP/1.x request head that Node's parser leaves to the
 * application, so Velocity and the server behind it always agree on which host
 * and target a request names (RFC 9112 §3.2, §3.2.2; Kettle 2017 host-header attacks).
 */

import { equalsLower } from '../ascii-case.ts';
import { VelocityError } from '../errors.ts';
import { applyHeaderNamePolicy, type UnderscoreHeaders } from './header-names.ts';
import { isHttp2Stream } from './http2.ts';
import type { ProxyRequest } from './proxy-message.ts';

/** A reg-name, IPv4 or bracketed IPv6 literal, with an optional port (RFC 3986 §3.2.2). */
const HOST = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=%]+|\[[0-9A-Fa-f:.]+\])(?::\d{0,5})?$/;
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)(.*)$/i;

const refused = (why: string) => new VelocityError('BAD_REQUEST', why);

/**
 * Returns the refusal for a head (400, or 505 for an HTTP version other than
 * 1.0 and 1.1), or undefined. Header names are cleaned by the underscore policy
 * (header-names.ts). An absolute-form target is rewritten in place to
 * origin-form, with its authority as the Host: the server must ignore Host then
 * (RFC 9112 §3.2.2), so Velocity routes by it too.
 */
export function checkRequestHead(req: ProxyRequest, underscores: UnderscoreHeaders): VelocityError | undefined {
  const namesRefused = applyHeaderNamePolicy(req, underscores);
  if (namesRefused) return namesRefused;
  // What the HTTP/1.1 parser checked already, with an origin-form target: nothing is left to do.
  if (req.hostChecked === true && req.url.charCodeAt(0) === 0x2f) return undefined;
  if (isHttp2Stream(req)) return undefined;
  // An HTTP/1 parser may accept "HTTP/2.0" or "HTTP/0.9" in a request line; only 1.0 and 1.1 are HTTP/1 messages Velocity can frame.
  if (req.httpVersionMajor !== 1 || req.httpVersionMinor > 1) return new VelocityError('HTTP_VERSION_NOT_SUPPORTED', `HTTP/${req.httpVersion} in an HTTP/1 request line`);
  const raw = req.rawHeaders;
  let hostAt = -1;
  for (let i = 0; i < raw.length; i += 2) {
    if (equalsLower(raw[i] as string, 'host')) {
      if (hostAt >= 0) return refused('more than one Host header');
      hostAt = i + 1;
    } else if (req.httpVersionMinor === 0 && equalsLower(raw[i] as string, 'transfer-encoding')) {
      // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing; the connection must close.
      return refused('Transfer-Encoding in an HTTP/1.0 request');
    }
  }
  if (hostAt < 0 && req.httpVersionMinor >= 1) return refused('missing Host header');
  if (hostAt >= 0 && raw[hostAt] !== '' && !HOST.test(raw[hostAt] as string)) return refused('invalid Host header');
  const target = req.url ?? '';
  if (target.startsWith('/') || (target === '*' && req.method === 'OPTIONS')) return undefined;
  const absolute = ABSOLUTE_FORM.exec(target);
  if (!absolute) return refused('invalid request target');
  const authority = absolute[1] as string;
  if (!HOST.test(authority)) return refused('invalid authority in the request target');
  const rest = absolute[2] as string;
  req.url = rest.startsWith('/') ? rest : `/${rest}`;
  req.headers.host = authority;
  if (hostAt >= 0) raw[hostAt] = authority;
  else raw.push('Host', authority);
  return undefined;
}
