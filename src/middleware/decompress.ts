/**
 * Request bodies sent compressed (Content-Encoding gzip, deflate, br or zstd) are
 * decoded before the server gets them, like Envoy's decompressor filter in the
 * request direction. The decoded size is bounded (`max_size`, 413 past it) so a
 * small "decompression bomb" cannot fill memory: the compressed body is read up to
 * that size and inflated with zlib's output limit. A body that does not decode is
 * refused with 400. Bodies with another or several codings, or `Cache-Control:
 * no-transform`, pass on untouched (the server decides), as in Envoy.
 */
import { Buffer } from 'node:buffer';
import { promisify } from 'node:util';
import { brotliDecompress, gunzip, inflate, zstdDecompress } from 'node:zlib';
import { z } from 'zod';
import { size } from '../config-fields.ts';
import type { Middleware, Reply } from './middleware.ts';

const DECODERS = {
  gzip: promisify(gunzip),
  deflate: promisify(inflate),
  br: promisify(brotliDecompress),
  zstd: promisify(zstdDecompress),
} as const;

type Coding = keyof typeof DECODERS;
const CODINGS = Object.keys(DECODERS) as [Coding, ...Coding[]];

export const decompressOptions = z.strictObject({
  /** Codings decoded; others pass on as sent. */
  encodings: z.array(z.enum(CODINGS)).min(1).default(CODINGS),
  /** Largest decoded body (and largest compressed one read); past it 413. */
  max_size: size().default(10 * 1024 * 1024),
});

const text = ['content-type', 'text/plain; charset=utf-8'];
const TOO_LARGE: Reply = { status: 413, code: 'PAYLOAD_TOO_LARGE', headers: [...text, 'connection', 'close'], body: '413 Payload too large (decompressed request body)\n' };
const CORRUPT: Reply = { status: 400, code: 'BAD_REQUEST', headers: text, body: '400 Request body does not decode as its Content-Encoding says\n' };

export function decompress(o: z.output<typeof decompressOptions>): Middleware {
  const accepted = new Set<string>(o.encodings);
  return {
    async request(req) {
      const coding = req.header('content-encoding')?.trim().toLowerCase();
      if (!coding || !req.hasBody || !accepted.has(coding) || /\bno-transform\b/i.test(req.header('cache-control') ?? '')) return undefined;
      if ((req.bodyLength !== undefined && req.bodyLength > o.max_size) || !(await req.bufferBody(o.max_size))) return TOO_LARGE;
      let decoded: Buffer;
      try {
        decoded = await DECODERS[coding as Coding](req.body ?? Buffer.alloc(0), { maxOutputLength: o.max_size });
      } catch (err) {
        return (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' ? TOO_LARGE : CORRUPT;
      }
      req.setBody(decoded);
      req.removeHeader('content-encoding');
      return undefined;
    },
  };
}
