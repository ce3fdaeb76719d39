/**
 * The chunked transfer coding of a request body (RFC 9112 §7.1), decoded as it
 * arrives: data slices go to the sink without copies, chunk extensions and
 * trailers are checked and dropped. Strict where parsers disagree: no
 * whitespace around the size, at most 12 hex digits, extensions as
 * token[=token|quoted-string] within a byte budget, trailers as header lines
 * within the head size limit, CRLF after every chunk's data.
 */
import type { Buffer } from 'node:buffer';
import { COLON, CR, FIELD_VALUE, HTAB, hexValue, LF, QDTEXT, QUOTED_PAIR, SP, TOKEN } from './chars.ts';

/** Hex digits in a chunk size: 12 is 256 TB, more is an attack on the size arithmetic. */
export const MAX_CHUNK_SIZE_DIGITS = 12;
/** Chunk-extension bytes per body (Node caps them at 16 KiB since CVE-2024-22019; extensions are dropped anyway). */
export const MAX_CHUNK_EXTENSION_BYTES = 4096;

/** Decoder states (numbers: type stripping has no enums). */
const Size = 0;
const ExtName = 1;
const ExtAfterName = 2;
const ExtValueStart = 3;
const ExtToken = 4;
const ExtQuoted = 5;
const ExtQuotedPair = 6;
const ExtAfterQuoted = 7;
const SizeLf = 8;
const Data = 9;
const DataCr = 10;
const DataLf = 11;
const TrailerStart = 12;
const TrailerName = 13;
const TrailerValue = 14;
const TrailerLf = 15;
const EndLf = 16;
const Done = 17;

/** Receives decoded body bytes: buf[start, end). */
export interface ChunkSink {
  chunkData(buf: Buffer, start: number, end: number): void;
}

export class ChunkedDecoder {
  private state = Size;
  private digits = 0;
  private remaining = 0;
  private extensionBytes = 0;
  private trailerBytes = 0;
  private readonly trailerLimit: number;
  private readonly sink: ChunkSink;
  /** Why the body was refused, once it was. */
  error: string | undefined;
  /**
   * Where the last `decode` call entered the trailer section (the index after the last chunk's
   * size line), or -1 when it did not: what precedes it is the chunk framing a pass-through sends on.
   */
  trailersFrom = -1;

  constructor(sink: ChunkSink, trailerLimit: number) {
    this.sink = sink;
    this.trailerLimit = trailerLimit;
  }

  reset(): void {
    this.state = Size;
    this.digits = 0;
    this.remaining = 0;
    this.extensionBytes = 0;
    this.trailerBytes = 0;
    this.error = undefined;
  }

  get done(): boolean {
    return this.state === Done;
  }

  /** Past the last chunk: in its trailer section (or done). */
  get inTrailers(): boolean {
    return this.state >= TrailerStart;
  }

  /**
   * Decodes buf[start, end). Returns the index where the body ended (bytes after
   * it belong to the next request), `end` when more is needed, or -1 on an error.
   */
  decode(buf: Buffer, start: number, end: number): number {
    this.trailersFrom = -1;
    let i = start;
    while (i < end) {
      const c = buf[i] as number;
      switch (this.state) {
        case Size: {
          const v = hexValue(c);
          if (v >= 0) {
            if (++this.digits > MAX_CHUNK_SIZE_DIGITS) return this.fail('chunk size has too many digits');
            this.remaining = this.remaining * 16 + v;
            i++;
            break;
          }
          if (this.digits === 0) return this.fail('invalid chunk size');
          if (c === CR) this.state = SizeLf;
          else if (c === 0x3b) this.state = ExtName;
          else return this.fail('invalid chunk size');
          i++;
          break;
        }
        case ExtName:
        case ExtAfterName:
        case ExtValueStart:
        case ExtToken:
        case ExtQuoted:
        case ExtQuotedPair:
        case ExtAfterQuoted:
          if (++this.extensionBytes > MAX_CHUNK_EXTENSION_BYTES) return this.fail('chunk extensions too large');
          if (!this.extension(c)) return -1;
          i++;
          break;
        case SizeLf:
          if (c !== LF) return this.fail('bare CR after a chunk size');
          i++;
          this.digits = 0;
          if (this.remaining === 0) {
            this.state = TrailerStart;
            this.trailersFrom = i;
          } else this.state = Data;
          break;
        case Data: {
          const take = Math.min(this.remaining, end - i);
          this.remaining -= take;
          this.sink.chunkData(buf, i, i + take);
          i += take;
          if (this.remaining === 0) this.state = DataCr;
          break;
        }
        case DataCr:
          if (c !== CR) return this.fail('chunk data not followed by CRLF');
          this.state = DataLf;
          i++;
          break;
        case DataLf:
          if (c !== LF) return this.fail('chunk data not followed by CRLF');
          this.state = Size;
          i++;
          break;
        default:
          // Trailer section and the final CRLF.
          if (++this.trailerBytes > this.trailerLimit) return this.fail('trailer section too large');
          if (!this.trailer(c)) return -1;
          i++;
          if (this.state === Done) return i;
      }
    }
    return end;
  }

  /** One byte of `;name[=value]` after a chunk size. */
  private extension(c: number): boolean {
    switch (this.state) {
      case ExtName:
        if (TOKEN[c]) this.state = ExtAfterName;
        else return this.fail('invalid chunk extension') >= 0;
        return true;
      case ExtAfterName:
      case ExtToken:
      case ExtAfterQuoted:
        if (TOKEN[c] && this.state !== ExtAfterQuoted) return true;
        if (c === 0x3d && this.state === ExtAfterName) this.state = ExtValueStart;
        else if (c === 0x3b) this.state = ExtName;
        else if (c === CR) this.state = SizeLf;
        else return this.fail('invalid chunk extension') >= 0;
        return true;
      case ExtValueStart:
        if (TOKEN[c]) this.state = ExtToken;
        else if (c === 0x22) this.state = ExtQuoted;
        else return this.fail('invalid chunk extension value') >= 0;
        return true;
      case ExtQuoted:
        if (c === 0x22) this.state = ExtAfterQuoted;
        else if (c === 0x5c) this.state = ExtQuotedPair;
        else if (!QDTEXT[c]) return this.fail('invalid byte in a quoted chunk extension') >= 0;
        return true;
      default:
        // ExtQuotedPair
        if (!QUOTED_PAIR[c]) return this.fail('invalid quoted-pair in a chunk extension') >= 0;
        this.state = ExtQuoted;
        return true;
    }
  }

  /** One byte of the trailer section: header lines, then CRLF. */
  private trailer(c: number): boolean {
    switch (this.state) {
      case TrailerStart:
        if (c === CR) this.state = EndLf;
        else if (TOKEN[c]) this.state = TrailerName;
        else return this.fail(c === SP || c === HTAB ? 'obs-fold in the trailer section' : 'invalid trailer field') >= 0;
        return true;
      case TrailerName:
        if (c === COLON) this.state = TrailerValue;
        else if (!TOKEN[c]) return this.fail('invalid trailer field name') >= 0;
        return true;
      case TrailerValue:
        if (c === CR) this.state = TrailerLf;
        else if (!FIELD_VALUE[c]) return this.fail('invalid byte in a trailer field') >= 0;
        return true;
      case TrailerLf:
        if (c !== LF) return this.fail('bare CR in the trailer section') >= 0;
        this.state = TrailerStart;
        return true;
      default:
        // EndLf
        if (c !== LF) return this.fail('bare CR at the end of the chunked body') >= 0;
        this.state = Done;
        return true;
    }
  }

  private fail(reason: string): number {
    this.error = reason;
    return -1;
  }
}
