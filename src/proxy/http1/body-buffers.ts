/**
 * Reused buffers for request bodies with a Content-Length of up to 64 KiB (retries.buffer_body's default:
 * the bodies a proxy holds whole, to resend on a retry), per thread.
 *
 * A body's bytes are read into the server's shared read buffer and must be copied out (socket-io.ts).
 * Copied into a fresh Buffer per read, a 64 KB POST made 64 KB of malloc'd memory per request that was
 * freed only when a GC found it dead: at c=20 that was 10–20 MB of dead bodies at any time and a malloc
 * heap fragmented around them. Copied into one of these instead, the body is given back when the request
 * is done with it (Http1Request.releaseBody: only once nothing can read it again) and the next body
 * reuses it. A body never given back (a middleware or mirror kept it, a write was still in flight) is
 * simply left to the GC, as before.
 *
 * Sizes are powers of two from 2 KiB; up to 32 of each are kept (at most 4 MB in all, 2 MB of them 64 KiB ones).
 */

import { Buffer } from 'node:buffer';

/** The largest body copied into a reused buffer. */
export const MAX_POOLED_BODY = 64 * 1024;
const MIN_SHIFT = 11;
const MAX_SHIFT = 16;
/** Spare buffers kept per size. */
const SPARE_PER_SIZE = 32;
const spares: Buffer[][] = Array.from({ length: MAX_SHIFT - MIN_SHIFT + 1 }, () => []);
let made = 0;
let givenBack = 0;

/** Body buffers allocated so far in this thread, and given back (tests: reuse is seen, not assumed). */
export function bodyBufferCounts(): { made: number; givenBack: number } {
  return { made, givenBack };
}

/** The size class of a body of `length` bytes (1 ≤ length ≤ MAX_POOLED_BODY). */
function classOf(length: number): number {
  return length <= 1 << MIN_SHIFT ? 0 : 32 - Math.clz32(length - 1) - MIN_SHIFT;
}

/** A buffer of at least `length` bytes (1 ≤ length ≤ MAX_POOLED_BODY), reused when one was given back. */
export function takeBodyBuffer(length: number): Buffer {
  const c = classOf(length);
  const spare = (spares[c] as Buffer[]).pop();
  if (spare !== undefined) return spare;
  made++;
  return Buffer.allocUnsafeSlow(1 << (c + MIN_SHIFT));
}

/** Gives back a buffer from takeBodyBuffer: nothing may read or write it any more. */
export function giveBackBodyBuffer(buffer: Buffer): void {
  givenBack++;
  const spare = spares[classOf(buffer.length)] as Buffer[];
  if (spare.length < SPARE_PER_SIZE) spare.push(buffer);
}
