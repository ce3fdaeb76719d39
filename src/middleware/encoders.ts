/**
 * The encoders of compressed responses (compress.ts), per thread. gzip encoders are reused: one that
 * finished a response — its last input flushed with Z_FINISH and every output byte emitted — is reset
 * and kept for the next response (at most SPARE_GZIP per level; one more is closed).
 *
 * Why: a new gzip stream costs a deflateInit that node runs on the thread pool at its first write —
 * 261 KB of zlib state (windowBits 15, memLevel 8) malloc'd from a pool thread's arena and freed by
 * deflateEnd when the stream closes — plus the JS stream and its 16 KB output buffer. Made and dropped
 * per response, that state was the 1 MB gzip bench row's churn (VmHWM 99–106 MB). `reset()` is
 * deflateReset on the same state: level, window and memory level stay, the gzip header is written
 * again. nginx makes zlib state per response from its request pool (shrinking the window and hash for a
 * small known Content-Length) and frees it when the response is done; a reused encoder keeps its full
 * window, so small responses compress as well as large ones and allocate nothing.
 *
 * Brotli and zstd encoders are made per response: node's `reset()` re-creates their native encoder
 * without the parameters it was made with (quality 11 and level 3, the libraries' defaults, instead of
 * the configured ones), and its docs give reset() for the inflate and deflate algorithms only.
 */

import { Buffer } from 'node:buffer';
import type { Transform } from 'node:stream';
import { brotliCompressSync, constants, createBrotliCompress, createGzip, createZstdCompress, type Gzip, gzipSync, type ZlibReset, zstdCompressSync } from 'node:zlib';
import { gzipWhole } from './whole-gzip.ts';

export const ENCODINGS = ['zstd', 'br', 'gzip'] as const;
export type Encoding = (typeof ENCODINGS)[number];
export const LEVELS = ['fast', 'default', 'best'] as const;
export type Level = (typeof LEVELS)[number];

/** Idle gzip encoders kept per level: ~261 KB of zlib state each, 2 MB at most. */
export const SPARE_GZIP = 8;
/** node documents reset() on every zlib stream (ZlibBase) for deflate; @types/node leaves it off Gzip. */
type ReusableGzip = Gzip & ZlibReset;
const spareGzip = new Map<number, ReusableGzip[]>();
let made = 0;
let reused = 0;
let closed = 0;

/** gzip encoders made, taken from the spares and closed for want of room so far in this thread (tests). */
export function gzipEncoderCounts(): { made: number; reused: number; closed: number; idle: number } {
  let idle = 0;
  for (const spare of spareGzip.values()) idle += spare.length;
  return { made, reused, closed, idle };
}

/** Whether a response ends this encoding's encoder with `finish` and gives it back (gzip), or with end(). */
export function reusable(encoding: Encoding): boolean {
  return encoding === 'gzip';
}

/** The largest body compressed whole on the event loop's thread (Encoders.compressWhole): one input buffer of compress.ts. */
export const WHOLE_MAX = 16 * 1024;
/** More than an encoding adds to a body of WHOLE_MAX bytes that does not compress (gzip: 18-byte header and trailer, 5 bytes a stored block). */
const WHOLE_FRAMING = 64;

/**
 * zlib's window and hash for a body of `length` bytes, nginx's rule (ngx_http_gzip_filter_memory): halve
 * both while the body fits in half the window (less zlib's 262-byte lookahead). windowBits 15 / memLevel 8
 * (node's defaults, ~261 KB of state) for 16 KB and up; 9 / 2 (~4 KB) for a body under 250 bytes. A window
 * larger than the body finds no more matches; the state made and cleared per call is what it costs.
 */
export function gzipWindowFor(length: number): { windowBits: number; memLevel: number } {
  let windowBits = 15;
  let memLevel = 8;
  while (windowBits > 9 && length < (1 << (windowBits - 1)) - 262) {
    windowBits--;
    memLevel--;
  }
  return { windowBits, memLevel };
}

/** The encoders of one compress middleware: a configured level. */
export class Encoders {
  private readonly gzipLevel: number;
  private readonly brotliQuality: number;
  private readonly zstdLevel: number;
  /** Whether small bodies are compressed on the event loop's thread: not at level best (brotli 11 takes ms even for 16 KB). */
  readonly wholeOnThread: boolean;
  constructor(level: Level) {
    this.gzipLevel = level === 'fast' ? 1 : level === 'best' ? 9 : 6;
    this.brotliQuality = level === 'fast' ? 1 : level === 'best' ? 11 : 5;
    this.zstdLevel = level === 'fast' ? 1 : level === 'best' ? 19 : 3;
    this.wholeOnThread = level !== 'best';
  }

  /**
   * A small body (at most WHOLE_MAX bytes), compressed at once on this thread, its state sized to the
   * body: gzip on a handle kept per window (whole-gzip.ts; gzipWindowFor); brotli and zstd by node's
   * *Sync calls, one encoder made per body (brotli: the size hint; zstd sizes its own from the input). A stream encoder does each write and the final flush on the
   * thread pool: two round trips of the event loop per response (futex wake-ups and context switches on
   * both sides) cost more CPU than compressing a few KB.
   */
  compressWhole(encoding: Encoding, body: Uint8Array): Buffer {
    // Output buffers the size of the body and its framing, not node's 16 KB default: a 16 KB Buffer per
    // response is 16 KB of young garbage per response (a bigger output only takes another buffer).
    const chunkSize = Math.max(constants.Z_MIN_CHUNK, body.length + WHOLE_FRAMING);
    if (encoding === 'gzip') {
      const window = gzipWindowFor(body.length);
      return gzipWhole(this.gzipLevel, window, body, Buffer.allocUnsafeSlow(chunkSize)) ?? gzipSync(body, { level: this.gzipLevel, chunkSize, ...window });
    }
    if (encoding === 'br')
      return brotliCompressSync(body, { chunkSize, params: { [constants.BROTLI_PARAM_QUALITY]: this.brotliQuality, [constants.BROTLI_PARAM_SIZE_HINT]: body.length } });
    return zstdCompressSync(body, { chunkSize, params: { [constants.ZSTD_c_compressionLevel]: this.zstdLevel } });
  }

  /** An encoder for one response: a spare gzip one when there is one. */
  take(encoding: Encoding): Transform {
    if (encoding === 'gzip') {
      const spare = spareGzip.get(this.gzipLevel)?.pop();
      if (spare !== undefined) {
        reused++;
        return spare;
      }
      made++;
      return createGzip({ level: this.gzipLevel });
    }
    if (encoding === 'br') return createBrotliCompress({ params: { [constants.BROTLI_PARAM_QUALITY]: this.brotliQuality } });
    return createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: this.zstdLevel } });
  }

  /**
   * Gives back a gzip encoder whose response is complete: its final flush called back and nothing is
   * left in its readable buffer, so no write is in flight on the thread pool and no byte of that
   * response can come out of it any more. It is reset and kept, or closed when enough are kept.
   */
  giveBack(encoder: Transform): void {
    const gzip = encoder as ReusableGzip;
    let spare = spareGzip.get(this.gzipLevel);
    if (spare === undefined) {
      spare = [];
      spareGzip.set(this.gzipLevel, spare);
    }
    if (spare.length >= SPARE_GZIP) {
      closed++;
      gzip.close();
      return;
    }
    gzip.reset();
    // A response that met a slow client may have left it paused: the next one's 'data' listener would not resume it.
    gzip.resume();
    spare.push(gzip);
  }

  /** Ends a response's input: a reusable encoder flushes with Z_FINISH (end() would make it unusable). */
  finish(encoding: Encoding, encoder: Transform, flushed: (error?: Error | null) => void): void {
    if (reusable(encoding)) (encoder as Gzip).flush(constants.Z_FINISH, flushed);
    else encoder.end();
  }
}
