/**
 * gzip of a whole small body (Encoders.compressWhole) on a zlib handle kept per level and window, instead
 * of node's gzipSync. gzipSync makes a Gzip stream per call — its Transform and EventEmitter state, an
 * 'error' listener, a native handle with its AsyncWrap and write-state array — and closes it after one
 * write. The handle is a weakly held native object: it outlives scavenges and dies only in a full GC, so
 * a stream of tiny gzipped responses filled the old generation and ran full GCs three times as often
 * (GET c=50 with every 21-byte response gzipped: RSS 103 MB against 92 uncompressed).
 *
 * What is done here is what gzipSync does inside, on a handle that stays: the handle's `writeSync` with
 * Z_FINISH into an output buffer that holds the whole result, then `reset()` (zlib's deflateReset: level,
 * window and hash kept, the gzip header written again). It needs what node:zlib does not document: the
 * stream's `_handle` (writeSync, reset) and `_writeState` (output and input bytes left after a write).
 * Without them, after an error (node then destroys the stream and drops its handle), or when the output
 * did not fit, the caller compresses with gzipSync.
 */
import type { Buffer } from 'node:buffer';
import { constants, createGzip, type Gzip } from 'node:zlib';

interface ZlibHandle {
  writeSync(flush: number, input: Uint8Array, inOffset: number, inLength: number, output: Uint8Array, outOffset: number, outLength: number): void;
  reset(): void;
}

/** node's Gzip with the internals a synchronous write uses (lib/zlib.js processChunkSync). */
interface GzipInternals extends Gzip {
  _handle: ZlibHandle | null;
  _writeState: Uint32Array;
}

export interface GzipWindow {
  windowBits: number;
  memLevel: number;
}

/** One kept stream per level, windowBits and memLevel: a handful per thread (gzipWindowFor has seven windows). */
const kept = new Map<number, GzipInternals>();
let made = 0;
let bodies = 0;

/** Handles made so far in this thread, bodies gzipped on them, and handles kept now (tests). */
export function wholeGzipCounts(): { made: number; bodies: number; kept: number } {
  return { made, bodies, kept: kept.size };
}

function usable(gzip: Partial<GzipInternals>): gzip is GzipInternals {
  return typeof gzip._handle?.writeSync === 'function' && typeof gzip._handle.reset === 'function' && gzip._writeState instanceof Uint32Array;
}

function handleFor(key: number, level: number, window: GzipWindow): GzipInternals | undefined {
  const known = kept.get(key);
  if (known !== undefined) return known;
  // The smallest output buffer node allows: the stream's own is never written, output goes where gzipWhole says.
  const gzip = createGzip({ level, ...window, chunkSize: constants.Z_MIN_CHUNK }) as Partial<GzipInternals> & Gzip;
  // A zlib error destroys the stream, which then emits it: seen here through the dropped handle instead.
  gzip.on('error', () => {});
  if (!usable(gzip)) {
    gzip.close();
    return undefined;
  }
  made++;
  kept.set(key, gzip);
  return gzip;
}

/**
 * `body` gzipped into `out` at `level` with `window`: a view of `out`, or undefined when it cannot be done
 * this way (internals missing, a zlib error, or `out` too small) and gzipSync must do it.
 */
export function gzipWhole(level: number, window: GzipWindow, body: Uint8Array, out: Buffer): Buffer | undefined {
  const key = (level * 16 + window.windowBits) * 16 + window.memLevel;
  const gzip = handleFor(key, level, window);
  const handle = gzip?._handle;
  if (gzip === undefined || !handle) return undefined;
  handle.writeSync(constants.Z_FINISH, body, 0, body.length, out, 0, out.length);
  if (gzip._handle === null) {
    kept.delete(key);
    return undefined;
  }
  const outLeft = gzip._writeState[0] as number;
  const inLeft = gzip._writeState[1] as number;
  handle.reset();
  // All output space used: the stream may not have ended (zlib stops when the output is full).
  if (outLeft === 0 || inLeft !== 0) return undefined;
  bodies++;
  return out.subarray(0, out.length - outLeft);
}
