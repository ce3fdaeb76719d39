/** gRPC-Web by hand for tests: protobuf fields encoded and decoded without a library, frames built and split. */
import assert from 'node:assert/strict';
import { varint } from '../../../src/upstream/grpc-health.ts';

/** A protobuf message of string and int fields, encoded by hand (field number → value). */
export function encodeMessage(fields: Record<number, string | number>): Buffer {
  const parts: Buffer[] = [];
  for (const [n, value] of Object.entries(fields)) {
    if (typeof value === 'string') {
      const bytes = Buffer.from(value);
      parts.push(Buffer.from([(Number(n) << 3) | 2]), varint(bytes.length), bytes);
    } else parts.push(Buffer.from([Number(n) << 3]), varint(value));
  }
  return Buffer.concat(parts);
}

/** Decodes string (wire type 2) and varint (wire type 0) fields. */
export function decodeMessage(buf: Buffer): Record<number, string | number> {
  const out: Record<number, string | number> = {};
  let at = 0;
  const readVarint = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = buf[at++] as number;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
      shift += 7;
    }
  };
  while (at < buf.length) {
    const key = readVarint();
    if ((key & 7) === 0) out[key >>> 3] = readVarint();
    else {
      const length = readVarint();
      out[key >>> 3] = buf.subarray(at, at + length).toString();
      at += length;
    }
  }
  return out;
}

/** One gRPC(-Web) message frame: flag 0, a 4-byte length, the payload. */
export function dataFrame(payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

export interface WebAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  messages: Record<number, string | number>[];
  /** The trailer frame as name → value, or undefined when the body had none (a trailers-only answer). */
  trailers: Record<string, string> | undefined;
}

/** Splits a grpc-web body into its messages and its trailer frame. */
export function parseBody(body: Buffer): Pick<WebAnswer, 'messages' | 'trailers'> {
  const messages: Record<number, string | number>[] = [];
  let trailers: Record<string, string> | undefined;
  for (let at = 0; at < body.length; ) {
    const flag = body[at] as number;
    const length = body.readUInt32BE(at + 1);
    const payload = body.subarray(at + 5, at + 5 + length);
    assert.equal(payload.length, length, 'a whole frame');
    at += 5 + length;
    if (flag & 0x80) {
      assert.equal(at, body.length, 'the trailer frame is the last one');
      trailers = {};
      for (const line of payload.toString('latin1').split('\r\n').filter(Boolean)) {
        const colon = line.indexOf(':');
        trailers[line.slice(0, colon)] = line.slice(colon + 1).trim();
      }
    } else messages.push(decodeMessage(payload));
  }
  return { messages, trailers };
}
