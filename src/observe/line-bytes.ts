/**
 * Access-log lines as the UTF-8 bytes the file gets, appended in place into one
 * growing buffer: no string is built per line, and the write hands the kernel the
 * buffer as it is (a pending string had to be flattened and encoded first, and
 * its pieces were most of what a line allocated).
 */

import { Buffer } from 'node:buffer';

/**
 * Room every reserve leaves past what it was asked for: a writer storing at most this
 * many bytes of its own (keys, punctuation, a newline) between reserves needs no check.
 */
export const SLACK = 1024;

const viewOf = (b: Buffer) => new DataView(b.buffer, b.byteOffset, b.length);

export class LineBytes {
  bytes: Buffer;
  /** The same bytes, for stores of several at once. */
  view: DataView;
  length = 0;

  constructor(capacity: number) {
    this.bytes = Buffer.allocUnsafe(capacity + SLACK);
    this.view = viewOf(this.bytes);
  }

  /** Makes room for `n` more bytes and SLACK (the buffer may be replaced: read `bytes` after this). */
  reserve(n: number): void {
    const need = this.length + n + SLACK;
    if (need <= this.bytes.length) return;
    const next = Buffer.allocUnsafe(Math.max(2 * this.bytes.length, need));
    this.bytes.copy(next, 0, 0, this.length);
    this.bytes = next;
    this.view = viewOf(next);
  }

  /** `s` in UTF-8, as a write of the string would put it (at most 3 bytes per UTF-16 unit). */
  text(s: string): void {
    this.reserve(3 * s.length);
    this.length += this.bytes.write(s, this.length, 'utf8');
  }

  /** Characters below 0x80, one byte each. */
  ascii(s: string): void {
    this.reserve(s.length);
    const b = this.bytes;
    let at = this.length;
    for (let i = 0; i < s.length; i++) b[at++] = s.charCodeAt(i);
    this.length = at;
  }
}
