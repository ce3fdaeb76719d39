/**
 * The last final head a connection's parser read (its bytes, and the ResponseHead they made), for a
 * server that sends the same head again and again: nginx's answer for a static file or a `return`
 * changes with its Date once a second. Parsing is a function of the head's bytes (and of whether the
 * request was HEAD, which the parser checks before asking), so the same bytes again make the same head:
 * compared, not parsed again.
 */
import { Buffer } from 'node:buffer';

/** What the parser remembers a head as (its ResponseHead; named here without importing the parser, which imports this). */
export interface RepeatableHead<H> {
  /** The same head for another response, as an object of its own. */
  again(): H;
}

/** A head longer than this is not remembered (nginx's are ~150–300 bytes). */
const MEMO_BYTES = 1024;
/**
 * After this many heads in a row unlike the remembered one, the next MEMO_REST heads are parsed without
 * a compare or a copy: a server whose heads all differ (a changing length, a per-response id) pays for
 * MEMO_MISSES compares and copies in every MEMO_MISSES + MEMO_REST heads.
 */
const MEMO_MISSES = 8;
const MEMO_REST = 1024;

export class HeadMemo<H extends RepeatableHead<H>> {
  private readonly bytes = Buffer.allocUnsafeSlow(MEMO_BYTES);
  /** The same bytes four at a time. */
  private readonly words = new Int32Array(this.bytes.buffer, this.bytes.byteOffset, MEMO_BYTES / 4);
  private size = 0;
  private head: H | undefined;
  /** Heads in a row that were not the remembered one (past MEMO_MISSES, counting the rest). */
  private misses = 0;
  /** The read buffer last compared against, four bytes at a time (the thread's idle-read buffer or the connection's own: the same one again and again). */
  private read: ArrayBufferLike | undefined;
  private readWords: Int32Array | undefined;

  /** The remembered head's length in bytes. */
  get length(): number {
    return this.size;
  }

  /** A head of its own made from the remembered one when buf[from, len) starts with its bytes; undefined otherwise. */
  match(buf: Buffer, from: number, len: number): H | undefined {
    if (this.misses >= MEMO_MISSES) {
      if (++this.misses >= MEMO_MISSES + MEMO_REST) this.misses = 0;
      return undefined;
    }
    const head = this.head;
    if (head === undefined) return undefined;
    if (len - from >= this.size && this.startsWithMemo(buf, from)) {
      this.misses = 0;
      return head.again();
    }
    this.misses++;
    return undefined;
  }

  /** Remembers the head parsed from buf[from, end) (unless it is too long, or the memo rests). */
  remember(buf: Buffer, from: number, end: number, head: H): void {
    if (this.misses >= MEMO_MISSES || end - from > MEMO_BYTES) return;
    buf.copy(this.bytes, 0, from, end);
    this.size = end - from;
    this.head = head;
  }

  /**
   * Whether buf[from…] starts with the remembered bytes. A buffer that is a whole ArrayBuffer of its own
   * (the pool's plain reads, http1-connection.ts) is compared four bytes at a time in a loop here, through a view made once per
   * buffer; any other (a TLS socket's chunks) by Buffer#compare, a call into C++.
   */
  private startsWithMemo(buf: Buffer, from: number): boolean {
    const n = this.size;
    const whole = buf.buffer;
    if (buf.byteOffset !== 0 || buf.length !== whole.byteLength || (from & 3) !== 0) return buf.compare(this.bytes, 0, n, from, from + n) === 0;
    if (whole !== this.read) {
      this.read = whole;
      this.readWords = new Int32Array(whole, 0, whole.byteLength >>> 2);
    }
    const read = this.readWords as Int32Array;
    const words = this.words;
    const first = from >>> 2;
    const count = n >>> 2;
    for (let k = 0; k < count; k++) if (read[first + k] !== words[k]) return false;
    for (let k = count * 4; k < n; k++) if (buf[from + k] !== this.bytes[k]) return false;
    return true;
  }
}
