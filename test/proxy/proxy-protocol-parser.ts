/**
 * A PROXY protocol reader for test backends (what HAProxy's `accept-proxy` does),
 * written from the specification independently of Velocity's writer.
 */

export interface ParsedProxyHeader {
  version: 1 | 2;
  sourceAddress: string | undefined;
  destinationAddress: string | undefined;
  sourcePort: number | undefined;
  destinationPort: number | undefined;
  /** Bytes the header took; what follows is the client's data. */
  length: number;
}

const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function ipv6Text(bytes: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i));
  // Longest run of zero groups becomes "::" (RFC 5952).
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLength).join(':')}`;
}

/** Parses a header at the start of `data`; undefined while incomplete. Throws on a malformed one. */
export function parseProxyHeader(data: Buffer): ParsedProxyHeader | undefined {
  if (data.length >= 16 && data.subarray(0, 12).equals(SIGNATURE)) {
    const length = 16 + data.readUInt16BE(14);
    if (data.length < length) return undefined;
    const command = data[12] as number;
    const family = data[13] as number;
    if (command === 0x20) return { version: 2, sourceAddress: undefined, destinationAddress: undefined, sourcePort: undefined, destinationPort: undefined, length };
    if (command !== 0x21) throw new Error(`bad v2 version/command byte ${command}`);
    if (family === 0x11) {
      return {
        version: 2,
        sourceAddress: [...data.subarray(16, 20)].join('.'),
        destinationAddress: [...data.subarray(20, 24)].join('.'),
        sourcePort: data.readUInt16BE(24),
        destinationPort: data.readUInt16BE(26),
        length,
      };
    }
    if (family === 0x21) {
      return {
        version: 2,
        sourceAddress: ipv6Text(data.subarray(16, 32)),
        destinationAddress: ipv6Text(data.subarray(32, 48)),
        sourcePort: data.readUInt16BE(48),
        destinationPort: data.readUInt16BE(50),
        length,
      };
    }
    throw new Error(`unsupported v2 family byte ${family}`);
  }
  const end = data.indexOf('\r\n');
  if (end < 0) {
    if (data.length > 107) throw new Error('v1 header longer than 107 bytes');
    return undefined;
  }
  const line = data.subarray(0, end).toString('latin1');
  const parts = line.split(' ');
  if (parts[0] !== 'PROXY') throw new Error(`not a PROXY header: ${JSON.stringify(line)}`);
  if (parts[1] === 'UNKNOWN') return { version: 1, sourceAddress: undefined, destinationAddress: undefined, sourcePort: undefined, destinationPort: undefined, length: end + 2 };
  if ((parts[1] !== 'TCP4' && parts[1] !== 'TCP6') || parts.length !== 6) throw new Error(`malformed v1 header: ${JSON.stringify(line)}`);
  return { version: 1, sourceAddress: parts[2], destinationAddress: parts[3], sourcePort: Number(parts[4]), destinationPort: Number(parts[5]), length: end + 2 };
}
