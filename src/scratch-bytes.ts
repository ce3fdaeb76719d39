/**
 * A buffer that serves write after write, for the bytes of the proxy's two writes per request (the request
 * head to a server, the response head and a small body to the client): strings copied in as latin1, then the
 * socket writes the buffer as it is. A string written to a socket was first flattened into one more string
 * when it was made of pieces (a cons string), then copied out; bytes written here are neither.
 *
 * Each character becomes the byte of its low eight bits, as a latin1 string write does: the same bytes on
 * the wire whatever a string holds.
 *
 * A write the kernel does not take whole keeps referring to the bytes until it completes: the writer then
 * says so (`retained`) and the next write gets a buffer of its own.
 */
import { Buffer } from 'node:buffer';

/** Shorter strings are copied by a loop here: a call into C++ (latin1Write) costs more than their characters. */
const LOOP_BELOW = 16;

/** Buffer's own latin1Write (not in its typings), which Buffer#write(…, 'latin1') ends in after an encoding lookup and argument checks. */
type Latin1Writable = Buffer & { latin1Write(text: string, offset: number, length: number): number };

/** Copies `text` into buf at `at` as latin1; returns the index after it. */
export function putLatin1(buf: Buffer, at: number, text: string): number {
  const n = text.length;
  if (n >= LOOP_BELOW) return at + (buf as Latin1Writable).latin1Write(text, at, n);
  for (let k = 0; k < n; k++) buf[at + k] = text.charCodeAt(k);
  return at + n;
}

export class ScratchBytes {
  /** Writes up to this size go into the shared buffer; a larger one gets its own. */
  readonly size: number;
  private shared: Buffer;
  /** The last view of `shared` handed out: the same length again (the usual case) reuses it. */
  private view: Buffer;

  constructor(size: number) {
    this.size = size;
    this.shared = Buffer.allocUnsafeSlow(size);
    this.view = this.shared.subarray(0, 0);
  }

  /** The buffer to write `length` bytes into, from its start: the shared one, or (past `size`) one of its own. */
  bufferFor(length: number): Buffer {
    return length <= this.size ? this.shared : Buffer.allocUnsafeSlow(length);
  }

  /** The first `length` bytes of `buf` (from bufferFor) as what to hand to the socket. */
  bytesOf(buf: Buffer, length: number): Buffer {
    if (buf !== this.shared) return buf;
    if (this.view.length !== length) this.view = buf.subarray(0, length);
    return this.view;
  }

  /** The last bytes handed out are still referred to (a write not taken whole): the next write goes elsewhere. */
  retained(): void {
    this.shared = Buffer.allocUnsafeSlow(this.size);
    this.view = this.shared.subarray(0, 0);
  }
}
