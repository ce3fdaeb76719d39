/**
 * The request head for a server as latin1 bytes, written into a buffer that serves head after head
 * (src/scratch-bytes.ts).
 *
 * Built by `+`, a head was a chain of cons strings (four per header line: ~880 bytes for the six
 * lines of a proxied wrk request) that the socket write then flattened into one more string (~270)
 * before copying it out: the largest source of garbage per request. Written piece by piece into
 * bytes, it makes none, and the socket writes the buffer as it is (no flattening, no copy).
 *
 * A write the kernel does not take whole keeps referring to the bytes until it completes: the caller
 * then says so (`headRetained`) and the next head gets a buffer of its own.
 */
import type { Buffer } from 'node:buffer';
import { putLatin1, ScratchBytes } from '../scratch-bytes.ts';

/** Heads up to this size are written into the shared buffer; a larger one gets its own. */
const scratch = new ScratchBytes(4096);
/** `' HTTP/1.1\r\n'` after the target, `'\r\n'` at the end. */
const REQUEST_LINE_REST = 11;

/**
 * The strings the head in `writtenInto` (the shared buffer) was written from — method, target, then each
 * header's name and value, as far as they are remembered — and the offset just past each one's separator. A head that begins with the same
 * strings (requests to one service repeat their request line, Host and forwarding headers; the request id
 * is usually the first string that differs) finds their bytes in place, and only the rest is written.
 * Compared as strings, so equal content written from another string object is found too. Holds the last
 * head's strings until the next head.
 */
const written: string[] = [];
const writtenEnd: number[] = [];
let writtenCount = 0;
let writtenInto: Buffer | undefined;

/**
 * `method SP target SP HTTP/1.1 CRLF`, a `name: value CRLF` line per pair of `headers`, then `extraLine`
 * (a whole line with its CRLF, or '') and the blank line. Valid until the next call.
 */
export function requestHeadBytes(method: string, target: string, headers: readonly string[], extraLine: string): Buffer {
  let length = method.length + 1 + target.length + REQUEST_LINE_REST + extraLine.length + 2;
  for (let i = 0; i < headers.length; i++) length += (headers[i] as string).length + 2;
  const buf = scratch.bufferFor(length);
  const reuse = length <= scratch.size;
  const pieces = headers.length + 2;
  let same = reuse && buf === writtenInto;
  // The pieces remembered for the next head: the ones found in place, and the first one written (so the memo
  // learns a head one piece a time). The ones after it follow a piece that differed — usually the request id,
  // unique to each request — and would be compared only if that one came again; storing each was a write
  // barrier (a new string into this long-lived list).
  let remembered = 0;
  let learning = reuse;
  let at = 0;
  for (let k = 0; k < pieces; k++) {
    const text = k === 0 ? method : k === 1 ? target : (headers[k - 2] as string);
    if (same && k < writtenCount && written[k] === text) {
      at = writtenEnd[k] as number;
      remembered = k + 1;
      continue;
    }
    same = false;
    at = putLatin1(buf, at, text);
    if (k === 0) buf[at++] = 0x20;
    else if (k === 1) at = putLatin1(buf, at, ' HTTP/1.1\r\n');
    else if ((k & 1) === 0) {
      buf[at++] = 0x3a;
      buf[at++] = 0x20;
    } else {
      buf[at++] = 0x0d;
      buf[at++] = 0x0a;
    }
    if (learning) {
      written[k] = text;
      writtenEnd[k] = at;
      remembered = k + 1;
      learning = false;
    }
  }
  at = putLatin1(buf, at, extraLine);
  buf[at++] = 0x0d;
  buf[at] = 0x0a;
  if (reuse) {
    writtenCount = remembered;
    writtenInto = buf;
  }
  return scratch.bytesOf(buf, length);
}

/** The last head's bytes are still referred to (a write not taken whole): the next head is written elsewhere. */
export function headRetained(): void {
  scratch.retained();
}
