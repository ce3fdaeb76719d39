/** IPv4/IPv6 addresses and CIDR ranges as 128-bit numbers; IPv4-mapped IPv6 is the IPv4 address. */
import { isIPv4, isIPv6 } from 'node:net';

export interface Cidr {
  text: string;
  /** Network address and mask length in the 128-bit IPv6 space (IPv4 as ::ffff:a.b.c.d). */
  base: bigint;
  bits: number;
}

const V4_MAPPED = 0xffffn << 32n;

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

/** `10.0.0.0/8`, `2001:db8::/32`, or a single address; undefined when malformed. */
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
  const mask = bits === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - bits)) - 1n);
  return { text: text.trim(), base: value & mask, bits };
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
