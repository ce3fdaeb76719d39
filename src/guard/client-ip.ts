/**
 * The client's address: the socket peer, or — only when that peer is a trusted
 * proxy — the right-most address in X-Forwarded-For (or, without it, Forwarded)
 * that is not itself a trusted proxy. Anything a client writes in those headers is
 * ignored otherwise. A hop that is not an address (`unknown`, garbage) stops the
 * walk and the peer is used, as nginx's realip does: nothing left of it can be believed.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import { type CidrSet, parseCidr } from '../cidr.ts';

/** `::ffff:1.2.3.4` (how Node reports IPv4 on a dual-stack socket) → `1.2.3.4`. */
export function normalizeIp(ip: string): string {
  // Asked for every request: a plain IPv4 or IPv6 address is known by its first character, no lower-casing.
  return ip.length > 7 && ip.charCodeAt(0) === 58 && ip.includes('.') && ip.slice(0, 7).toLowerCase() === '::ffff:' ? ip.slice(7) : ip;
}

/** One hop of X-Forwarded-For / Forwarded (`1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:443`, quoted) as a canonical address. */
export function parseHop(raw: string): string | undefined {
  let value = raw.trim();
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
  if (value.startsWith('[')) {
    const end = value.indexOf(']');
    if (end < 0) return undefined;
    value = value.slice(1, end);
  } else if (value.includes('.') && value.lastIndexOf(':') > value.lastIndexOf('.')) {
    value = value.slice(0, value.lastIndexOf(':'));
  }
  const family = isIP(value);
  if (family === 4) return value;
  if (family === 6) return normalizeIp(parseCidr(value)?.text ?? value);
  return undefined;
}

/** The `for=` values of `Forwarded` (RFC 7239), in order. */
function forwardedFor(header: string): string[] {
  const out: string[] = [];
  for (const element of header.split(',')) {
    for (const pair of element.split(';')) {
      const eq = pair.indexOf('=');
      if (eq >= 0 && pair.slice(0, eq).trim().toLowerCase() === 'for') out.push(pair.slice(eq + 1));
    }
  }
  return out;
}

/** What the resolver reads of a request: its headers and the connection's peer. */
export interface ClientAddressSource {
  readonly headers: IncomingHttpHeaders;
  readonly socket: { readonly remoteAddress?: string | undefined };
}

function forwardedChain(req: ClientAddressSource): string[] {
  const xff = req.headers['x-forwarded-for'];
  if (xff) return (Array.isArray(xff) ? xff.join(',') : xff).split(',');
  const forwarded = req.headers.forwarded;
  return forwarded ? forwardedFor(Array.isArray(forwarded) ? forwarded.join(',') : forwarded) : [];
}

export class ClientIpResolver {
  private readonly trusted: CidrSet;

  constructor(trusted: CidrSet) {
    this.trusted = trusted;
  }

  peerTrusted(req: ClientAddressSource): boolean {
    return this.trusted.size > 0 && this.trusted.has(normalizeIp(req.socket.remoteAddress ?? ''));
  }

  resolve(req: ClientAddressSource): string {
    const peer = normalizeIp(req.socket.remoteAddress ?? '');
    if (this.trusted.size === 0 || !this.trusted.has(peer)) return peer;
    const chain = forwardedChain(req);
    let client = peer;
    for (let i = chain.length - 1; i >= 0; i--) {
      const hop = parseHop(chain[i] as string);
      if (hop === undefined) return peer;
      client = hop;
      if (!this.trusted.has(hop)) return hop;
    }
    // Every hop is a trusted proxy: the left-most is as far as the chain goes.
    return client;
  }
}
