/**
 * IPv4/IPv6 addresses and CIDR ranges as 128-bit numbers. IPv4 lives in the
 * IPv4-mapped part of the IPv6 space (::ffff:a.b.c.d), so `10.0.0.0/8` and
 * `::ffff:10.0.0.0/104` are one range and a mapped client address matches both.
 */
import { isIPv4, isIPv6 } from 'node:net';

export interface Cidr {
  /** Canonical text: network address (IPv4 dotted, IPv6 compressed) and `/bits` unless a single address. */
  text: string;
  /** Network address in the 128-bit space. */
  base: bigint;
  /** Mask length in the 128-bit space (an IPv4 /8 is 104). */
  bits: number;
}

const V4_MAPPED = 0xffffn << 32n;
const ALL_ONES = (1n << 128n) - 1n;

function v4ToBig(ip: string): bigint {
  return ip.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function v6ToBig(ip: string): bigint {
  let text = ip;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  // A trailing dotted IPv4 (::ffff:1.2.3.4) becomes two hex groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = v4ToBig(dotted[1] as string);
    text = `${text.slice(0, dotted.index)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(Number.parseInt(g || '0', 16)), 0n);
}

/** The address as a 128-bit number, or undefined when it is not an IP address. */
export function ipToBig(ip: string): bigint | undefined {
  if (isIPv4(ip)) return V4_MAPPED | v4ToBig(ip);
  const bare = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  if (isIPv6(bare)) return v6ToBig(bare);
  return undefined;
}

/** The canonical text of a range: mapped IPv4 as dotted quads, IPv6 compressed (RFC 5952). */
export function formatCidr(base: bigint, bits: number): string {
  if (bits >= 96 && base >> 32n === 0xffffn) {
    const v4 = [24n, 16n, 8n, 0n].map((s) => Number((base >> s) & 0xffn)).join('.');
    return bits === 128 ? v4 : `${v4}/${bits - 96}`;
  }
  const groups = Array.from({ length: 8 }, (_, i) => ((base >> BigInt(112 - 16 * i)) & 0xffffn).toString(16));
  // The WHATWG URL serializer compresses IPv6 the canonical way.
  const v6 = new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
  return bits === 128 ? v6 : `${v6}/${bits}`;
}

/** `10.0.0.0/8`, `2001:db8::/32`, or a single address; undefined when malformed. Host bits are cleared. */
export function parseCidr(text: string): Cidr | undefined {
  const [addr, len, extra] = text.trim().split('/');
  if (addr === undefined || extra !== undefined) return undefined;
  const v4 = isIPv4(addr);
  const value = ipToBig(addr);
  if (value === undefined) return undefined;
  const max = v4 ? 32 : 128;
  const n = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : Number.NaN;
  if (!(n >= 0 && n <= max)) return undefined;
  const bits = v4 ? 96 + n : n;
  const mask = bits === 0 ? 0n : ALL_ONES ^ ((1n << BigInt(128 - bits)) - 1n);
  const base = value & mask;
  return { text: formatCidr(base, bits), base, bits };
}

export function cidrContains(cidr: Cidr, ip: bigint): boolean {
  if (cidr.bits === 0) return true;
  const shift = BigInt(128 - cidr.bits);
  return ip >> shift === cidr.base >> shift;
}

/** A list of ranges; `has` answers whether an address is in any of them. */
export class CidrSet {
  readonly cidrs: readonly Cidr[];

  constructor(cidrs: readonly Cidr[]) {
    this.cidrs = cidrs;
  }

  has(ip: string | bigint): boolean {
    const value = typeof ip === 'bigint' ? ip : ipToBig(ip);
    if (value === undefined) return false;
    for (const c of this.cidrs) if (cidrContains(c, value)) return true;
    return false;
  }

  get size(): number {
    return this.cidrs.length;
  }
}
