/**
 * The client's address: the socket peer, or — only when that peer is a trusted
 * proxy — the right-most address in X-Forwarded-For / Forwarded that is not itself
 * a trusted proxy. Anything a client writes in those headers is ignored otherwise.
 */
import type { IncomingMessage } from 'node:http';
import type { CidrSet } from './cidr.ts';

export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/** Addresses from `Forwarded: for=…` (RFC 7239), in order. */
function forwardedFor(header: string): string[] {
  const out: string[] = [];
  for (const element of header.split(',')) {
    for (const pair of element.split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0 || pair.slice(0, eq).trim().toLowerCase() !== 'for') continue;
      let value = pair
        .slice(eq + 1)
        .trim()
        .replace(/^"|"$/g, '');
      if (value.startsWith('[')) value = value.slice(1, value.indexOf(']'));
      else if (/^\d+\.\d+\.\d+\.\d+:\d+$/.test(value)) value = value.slice(0, value.lastIndexOf(':'));
      out.push(value);
    }
  }
  return out;
}

export class ClientIpResolver {
  private readonly trusted: CidrSet;

  constructor(trusted: CidrSet) {
    this.trusted = trusted;
  }

  peerTrusted(req: IncomingMessage): boolean {
    return this.trusted.size > 0 && this.trusted.has(normalizeIp(req.socket.remoteAddress ?? ''));
  }

  resolve(req: IncomingMessage): string {
    const peer = normalizeIp(req.socket.remoteAddress ?? '');
    if (this.trusted.size === 0 || !this.trusted.has(peer)) return peer;
    const xff = req.headers['x-forwarded-for'];
    const chain = xff ? (Array.isArray(xff) ? xff.join(',') : xff).split(',').map((s) => s.trim()) : forwardedFor(String(req.headers.forwarded ?? ''));
    for (let i = chain.length - 1; i >= 0; i--) {
      const hop = normalizeIp(chain[i] as string);
      if (!hop) continue;
      if (!this.trusted.has(hop)) return hop;
    }
    return chain.length > 0 ? normalizeIp(chain[0] as string) : peer;
  }
}
