/**
 * PROXY protocol headers (HAProxy's spec, versions 1 and 2) that tell a server
 * behind a TCP service who the client was: written first on the connection to
 * the server, before any client byte.
 */
import { Buffer } from 'node:buffer';
import { isIPv4, isIPv6 } from 'node:net';

export type ProxyProtocolVersion = 'v1' | 'v2';

/** The two ends of the client's connection to Velocity. */
export interface ConnectionEnds {
  sourceAddress: string | undefined;
  sourcePort: number | undefined;
  destinationAddress: string | undefined;
  destinationPort: number | undefined;
}

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_PROXY = 0x21; // version 2, command PROXY
const V2_LOCAL = 0x20; // version 2, command LOCAL (addresses unknown)
const V2_TCP4 = 0x11;
const V2_TCP6 = 0x21;

interface Family {
  family: 4 | 6;
  source: string;
  destination: string;
}

/** Both addresses in one family: IPv4-mapped IPv6 becomes IPv4, a mixed pair becomes IPv6. */
function sameFamily(ends: ConnectionEnds): Family | undefined {
  const unmap = (a: string | undefined) => (a?.toLowerCase().startsWith('::ffff:') && isIPv4(a.slice(7)) ? a.slice(7) : a);
  const source = unmap(ends.sourceAddress);
  const destination = unmap(ends.destinationAddress);
  if (!source || !destination || ends.sourcePort === undefined || ends.destinationPort === undefined) return undefined;
  if (isIPv4(source) && isIPv4(destination)) return { family: 4, source, destination };
  const mapped = (a: string) => (isIPv4(a) ? `::ffff:${a}` : a);
  if (isIPv6(mapped(source)) && isIPv6(mapped(destination))) return { family: 6, source: mapped(source), destination: mapped(destination) };
  return undefined;
}

export function proxyProtocolHeader(version: ProxyProtocolVersion, ends: ConnectionEnds): Buffer {
  return version === 'v1' ? Buffer.from(proxyHeaderV1(ends), 'latin1') : proxyHeaderV2(ends);
}

/** `PROXY TCP4 192.0.2.1 198.51.100.1 51234 6379\r\n`, or `PROXY UNKNOWN\r\n`. */
export function proxyHeaderV1(ends: ConnectionEnds): string {
  const f = sameFamily(ends);
  if (!f) return 'PROXY UNKNOWN\r\n';
  return `PROXY TCP${f.family} ${f.source} ${f.destination} ${ends.sourcePort} ${ends.destinationPort}\r\n`;
}

/** The binary form: signature, version/command, family, length, addresses, ports. */
export function proxyHeaderV2(ends: ConnectionEnds): Buffer {
  const f = sameFamily(ends);
  if (!f) return Buffer.concat([V2_SIGNATURE, Buffer.from([V2_LOCAL, 0x00, 0x00, 0x00])]);
  const addressBytes = f.family === 4 ? 4 : 16;
  const body = Buffer.alloc(addressBytes * 2 + 4);
  const encode = f.family === 4 ? ipv4Bytes : ipv6Bytes;
  encode(f.source).copy(body, 0);
  encode(f.destination).copy(body, addressBytes);
  body.writeUInt16BE(ends.sourcePort as number, addressBytes * 2);
  body.writeUInt16BE(ends.destinationPort as number, addressBytes * 2 + 2);
  const head = Buffer.from([V2_PROXY, f.family === 4 ? V2_TCP4 : V2_TCP6, 0, 0]);
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, body]);
}

export function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

/** 16 bytes of an IPv6 address, `::` expanded and a trailing dotted IPv4 part allowed. */
export function ipv6Bytes(address: string): Buffer {
  let text = address.replace(/%.*$/, '');
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = (v4[1] as string).split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, -(v4[1] as string).length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? (text.split('::') as [string, string]) : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => {
    out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  });
  return out;
}
