/**
 * An incremental HTTP/1.x response parser for the upstream side, on latin1
 * bytes. It frames bodies (Content-Length, chunked, close-delimited, none for
 * HEAD/1xx/204/304) and hands body bytes out as slices of the socket's buffers,
 * without copies: a chunked body decoded, or — when the receiver asks for it —
 * with its chunk framing as the server sent it (every byte still checked, the
 * trailer section dropped), so that an HTTP/1.1 client gets the same chunks. It is at least as strict as llhttp (a differential fuzzer
 * checks that): what it cannot frame one way only, it refuses, and the
 * connection is dropped with a 502.
 *
 * One parser per connection, reset for each response.
 */
import { Buffer } from 'node:buffer';
import { HOP_BY_HOP } from '../hop-by-hop.ts';
import { HeadMemo } from './head-memo.ts';

/**
 * What a final head's bytes say, read once: shared by every ResponseHead made for the same bytes again
 * (head-memo.ts), so that a head repeated costs a two-field object, not a copy of these fourteen.
 */
class HeadFacts {
  readonly status: number;
  readonly reason: string;
  readonly keepAlive: boolean;
  readonly closeDelimited: boolean;
  readonly length: number;
  readonly endToEndLines: string | undefined;
  readonly withStatusLine: boolean;
  readonly hasDate: boolean;
  readonly hasContentLength: boolean;
  readonly keepAliveTimeoutMs: number;
  /** The head as latin1 text, and where its header lines start in it (after the status line). */
  readonly text: string;
  readonly linesAt: number;

  constructor(
    status: number,
    reason: string,
    length: number,
    close: boolean,
    text: string,
    linesAt: number,
    endToEndLines: string | undefined,
    withStatusLine: boolean,
    hasDate: boolean,
    hasContentLength: boolean,
    keepAliveTimeoutMs: number,
  ) {
    this.status = status;
    this.reason = reason;
    this.length = length;
    this.keepAlive = !close && length !== UNTIL_CLOSE;
    this.closeDelimited = length === UNTIL_CLOSE;
    this.text = text;
    this.linesAt = linesAt;
    this.endToEndLines = endToEndLines;
    this.withStatusLine = withStatusLine;
    this.hasDate = hasDate;
    this.hasContentLength = hasContentLength;
    this.keepAliveTimeoutMs = keepAliveTimeoutMs;
  }
}

/** A server's final response head as the parser read it. */
export class ResponseHead {
  private readonly facts: HeadFacts;
  private list: string[] | undefined = undefined;

  constructor(facts: HeadFacts) {
    this.facts = facts;
  }

  get status(): number {
    return this.facts.status;
  }

  get reason(): string {
    return this.facts.reason;
  }

  /** HTTP/1.1 without `Connection: close` (or HTTP/1.0 without keep-alive): the connection may carry another request. */
  get keepAlive(): boolean {
    return this.facts.keepAlive;
  }

  /** The body ends when the server closes (no length, not chunked): the client connection cannot stay open either. */
  get closeDelimited(): boolean {
    return this.facts.closeDelimited;
  }

  /** Framing: -1 chunked, -2 until close, otherwise the byte count (0 for none). */
  get length(): number {
    return this.facts.length;
  }

  /**
   * The header lines as the server wrote them, each with its CRLF, without the hop-by-hop fields
   * (src/hop-by-hop.ts): what a proxy passes on, as one string. Set only when that is byte for byte what
   * writing `headers` out again would give — every such line `Name: value` (one space, no trailing
   * whitespace) and no Connection field naming further fields to drop; otherwise undefined.
   */
  get endToEndLines(): string | undefined {
    return this.facts.endToEndLines;
  }

  /**
   * endToEndLines starts with the server's status line: it is `HTTP/1.1 <status> <reason>` with a reason,
   * byte for byte the one a client response head with that status and reason begins with.
   */
  get withStatusLine(): boolean {
    return this.facts.withStatusLine;
  }

  /** Among those lines: a Date field. */
  get hasDate(): boolean {
    return this.facts.hasDate;
  }

  /** Among those lines: a Content-Length field (whatever the framing made of it). */
  get hasContentLength(): boolean {
    return this.facts.hasContentLength;
  }

  /** How long the server keeps the connection idle, as its `Keep-Alive: timeout=N` said (ms); -1 when it did not say. */
  get keepAliveTimeoutMs(): number {
    return this.facts.keepAliveTimeoutMs;
  }

  /**
   * Flat list, name, value, …, names as the server wrote them; without the fields only this hop reads
   * (`Connection: keep-alive` or `close`, `Keep-Alive`): keepAlive says what they said, and every
   * consumer drops them (the client connection has its own). A Connection naming other fields stays.
   * Made when first asked for: a head passed on by its end-to-end lines never needs it.
   */
  get headers(): string[] {
    this.list ??= fieldList(this.facts.text, this.facts.linesAt);
    return this.list;
  }

  /** The same head for another response: a head of its own (a consumer may change the header list it is given), the facts shared. */
  again(): ResponseHead {
    return new ResponseHead(this.facts);
  }
}

export interface ResponseParserEvents {
  onInformational(status: number, headers: string[]): void;
  /** The final head; true asks for a chunked body with its framing (see onResponseBody). */
  onResponseHead(head: ResponseHead): boolean;
  /**
   * A slice of body payload (chunk framing removed); or, when onResponseHead asked for the framing,
   * a slice of the chunked body as sent (sizes, extensions, CRLFs, the last chunk, then a final CRLF
   * in place of the trailer section).
   */
  onResponseBody(chunk: Buffer): void;
  onResponseComplete(): void;
}

export const MAX_HEAD_BYTES = 32 * 1024;
const MAX_HEADERS = 256;
const MAX_CHUNK_SIZE_DIGITS = 12;
const MAX_CHUNK_EXTENSION = 1024;
const MAX_TRAILER_BYTES = 8 * 1024;

const CHUNKED = -1;
const UNTIL_CLOSE = -2;

// States.
const HEAD = 0;
const BODY_LENGTH = 1;
const BODY_UNTIL_CLOSE = 2;
const CHUNK_SIZE = 3;
const CHUNK_EXTENSION = 4;
const CHUNK_SIZE_LF = 5;
const CHUNK_DATA = 6;
const CHUNK_DATA_CR = 7;
const CHUNK_DATA_LF = 8;
const TRAILERS = 9;
const DONE = 10;
const FAILED = 11;

/** The parts of a chunk extension (ResponseParser.chunkExtension). */
const EXT_NAME = 0;
const EXT_VALUE = 1;
const EXT_QUOTED = 2;
const EXT_QUOTE_CLOSED = 3;

const CR = 13;
const LF = 10;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** Ends a chunked body passed on with its framing: the trailer section is dropped. */
const FINAL_CRLF = Buffer.from('\r\n', 'latin1');

/** RFC 9110 tchar. */
const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TOKEN[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TOKEN[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TOKEN[c] = 1;

/** field-vchar, SP, HTAB and obs-text: what a header value (or reason phrase) may hold. */
const FIELD = new Uint8Array(256);
FIELD[9] = 1;
for (let c = 0x20; c <= 0x7e; c++) FIELD[c] = 1;
for (let c = 0x80; c <= 0xff; c++) FIELD[c] = 1;

const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

/** Thrown inside the parser; the connection turns it into a 502. */
export class ResponseParseError extends Error {
  readonly code = 'VELOCITY_BAD_RESPONSE';
}

function fail(message: string): never {
  throw new ResponseParseError(`upstream response: ${message}`);
}

export class ResponseParser {
  private state = HEAD;
  private noBody = false;
  /** The request asked to switch protocols: a 101 ends the head (reset). */
  private upgrade = false;
  /** Head bytes not yet ending in CRLFCRLF (or trailer bytes). */
  private pending: Buffer | undefined;
  private remaining = 0;
  private extensionBytes = 0;
  private sizeDigits = 0;
  /** In a chunk extension: which part the next byte belongs to (EXT_*), and the bytes of its name or value so far. */
  private extensionPart = EXT_NAME;
  private extensionPartBytes = 0;
  /** The chunked body is handed out with its framing. */
  private framed = false;
  /** Framed mode: where the bytes of the current `run` not yet handed out start (-1: none). */
  private rawFrom = -1;
  /** Response bytes seen since reset: a connection that saw none may be retried elsewhere. */
  bytesSeen = 0;
  private readonly events: ResponseParserEvents;
  /**
   * The last final head parsed (not a HEAD request's), for a server that sends it again (head-memo.ts); made
   * with the second: a connection that closes after one response (no keep-alive) never pays for its buffer
   * (a fresh parser's first response ~0.7 µs, ~3.7 with a memo made for it).
   */
  private memo: HeadMemo<ResponseHead> | undefined;
  /** Whether a final head was parsed before (the next one makes the memo). */
  private parsedHead = false;

  constructor(events: ResponseParserEvents) {
    this.events = events;
  }

  /**
   * Ready for the response to the next request; `head` when it was a HEAD request (no body whatever the
   * headers say); `upgrade` when it asked to switch protocols: a 101 is then a final head without a body,
   * and the bytes after it (execute's return value says where they start) are the new protocol's.
   */
  reset(head: boolean, upgrade = false): void {
    this.state = HEAD;
    this.noBody = head;
    this.upgrade = upgrade;
    this.pending = undefined;
    this.bytesSeen = 0;
    this.framed = false;
  }

  get complete(): boolean {
    return this.state === DONE;
  }

  /** Whether the response so far ends only when the server closes. */
  get untilClose(): boolean {
    return this.state === BODY_UNTIL_CLOSE;
  }

  /**
   * Feeds the bytes data[0, end) (a read into a larger buffer is passed whole, without a view of its
   * filled part). Returns how many belong to the current response: fewer than `end` means the
   * response completed and more bytes followed it. Throws ResponseParseError on a malformed response.
   */
  execute(data: Buffer, end: number = data.length): number {
    this.bytesSeen += end;
    try {
      return this.run(data, end);
    } catch (err) {
      this.state = FAILED;
      throw err;
    }
  }

  /** The server closed its side: completes a close-delimited body; anything else was cut short. */
  finish(): void {
    if (this.state === BODY_UNTIL_CLOSE) {
      this.state = DONE;
      this.events.onResponseComplete();
    } else if (this.state !== DONE) {
      this.state = FAILED;
      fail(this.bytesSeen === 0 ? 'connection closed before any response byte' : 'connection closed before the response was complete');
    }
  }

  private run(data: Buffer, end: number): number {
    // Body slices are `data` itself only when it holds exactly this read.
    const whole = end === data.length;
    let i = 0;
    this.rawFrom = this.framed && this.state >= CHUNK_SIZE && this.state <= CHUNK_DATA_LF ? 0 : -1;
    while (i < end) {
      switch (this.state) {
        case HEAD: {
          const used = this.takeHead(data, i, end);
          if (used < 0) return end;
          i = used;
          if (this.framed) this.rawFrom = i;
          break;
        }
        case BODY_LENGTH: {
          const n = Math.min(this.remaining, end - i);
          this.remaining -= n;
          const slice = i === 0 && n === end && whole ? data : data.subarray(i, i + n);
          i += n;
          if (this.remaining === 0) this.state = DONE;
          this.events.onResponseBody(slice);
          if (this.state === DONE) this.events.onResponseComplete();
          break;
        }
        case BODY_UNTIL_CLOSE:
          this.events.onResponseBody(i === 0 && whole ? data : data.subarray(i, end));
          return end;
        case CHUNK_DATA: {
          const n = Math.min(this.remaining, end - i);
          this.remaining -= n;
          const from = i;
          i += n;
          if (this.remaining === 0) this.state = CHUNK_DATA_CR;
          if (this.rawFrom < 0) this.events.onResponseBody(data.subarray(from, i));
          break;
        }
        case TRAILERS: {
          const used = this.takeTrailers(data, i, end);
          if (used < 0) return end;
          i = used;
          this.state = DONE;
          if (this.framed) this.events.onResponseBody(FINAL_CRLF);
          this.events.onResponseComplete();
          break;
        }
        case DONE:
          return i;
        case FAILED:
          fail('bytes after a parse error');
          break;
        default:
          i = this.chunkFraming(data, i, end);
          if (this.state === TRAILERS && this.rawFrom >= 0) {
            // Everything up to the last chunk's size line, as sent.
            this.events.onResponseBody(data.subarray(this.rawFrom, i));
            this.rawFrom = -1;
          }
      }
    }
    if (this.rawFrom >= 0 && this.rawFrom < end) this.events.onResponseBody(this.rawFrom === 0 && whole ? data : data.subarray(this.rawFrom, end));
    if (this.state === DONE) return i;
    return end;
  }

  /** The byte-wise part of chunked framing: sizes, extensions, CRLFs. */
  private chunkFraming(data: Buffer, start: number, end: number): number {
    let i = start;
    while (i < end) {
      const c = data[i] as number;
      switch (this.state) {
        case CHUNK_SIZE: {
          const v = HEX[c] as number;
          if (v >= 0) {
            if (++this.sizeDigits > MAX_CHUNK_SIZE_DIGITS) fail('chunk size too long');
            this.remaining = this.remaining * 16 + v;
          } else if (this.sizeDigits === 0) fail('invalid chunk size');
          else if (c === 0x3b) {
            this.state = CHUNK_EXTENSION;
            this.extensionBytes = 0;
            this.extensionPart = EXT_NAME;
            this.extensionPartBytes = 0;
          } else if (c === CR) this.state = CHUNK_SIZE_LF;
          else fail('invalid character after a chunk size');
          break;
        }
        case CHUNK_EXTENSION:
          if (++this.extensionBytes > MAX_CHUNK_EXTENSION) fail('chunk extension too long');
          this.chunkExtension(c);
          break;
        case CHUNK_SIZE_LF:
          if (c !== LF) fail('chunk size line not ended by CRLF');
          if (this.remaining === 0) {
            this.state = TRAILERS;
            this.pending = undefined;
            return i + 1;
          }
          this.state = CHUNK_DATA;
          return i + 1;
        case CHUNK_DATA_CR:
          if (c !== CR) fail('chunk data longer than its size');
          this.state = CHUNK_DATA_LF;
          break;
        case CHUNK_DATA_LF:
          if (c !== LF) fail('chunk data not ended by CRLF');
          this.state = CHUNK_SIZE;
          this.remaining = 0;
          this.sizeDigits = 0;
          break;
        default:
          return i;
      }
      i++;
    }
    return i;
  }

  /**
   * One byte of `;name[=value]…` after a chunk size, value a token or a quoted string, no whitespace: as
   * llhttp reads it or stricter (it refuses a quote anywhere but at the start of a value, anything but `;` or
   * the CR after a closing quote, an empty name, a second `=`; this parser also a backslash in quotes).
   */
  private chunkExtension(c: number): void {
    const part = this.extensionPart;
    if (part === EXT_QUOTED) {
      if (c === 0x22) this.extensionPart = EXT_QUOTE_CLOSED;
      else if (FIELD[c] !== 1 || c === 0x5c) fail('invalid character in a chunk extension');
    } else if (c === CR || c === 0x3b) {
      if (part === EXT_NAME && this.extensionPartBytes === 0) fail('empty chunk extension name');
      if (c === CR) this.state = CHUNK_SIZE_LF;
      this.extensionPart = EXT_NAME;
      this.extensionPartBytes = 0;
    } else if (part === EXT_QUOTE_CLOSED) fail('invalid character after a quoted chunk extension value');
    else if (c === 0x3d) {
      if (part !== EXT_NAME || this.extensionPartBytes === 0) fail('invalid "=" in a chunk extension');
      this.extensionPart = EXT_VALUE;
      this.extensionPartBytes = 0;
    } else if (c === 0x22) {
      if (part !== EXT_VALUE || this.extensionPartBytes !== 0) fail('invalid quote in a chunk extension');
      this.extensionPart = EXT_QUOTED;
    } else if (TOKEN[c] === 1) this.extensionPartBytes++;
    else fail('invalid character in a chunk extension');
  }

  /** Collects head bytes; on a whole head, parses it and returns the index in `data` after it, or -1 when more bytes are needed. */
  private takeHead(data: Buffer, start: number, end: number): number {
    const prior = this.pending;
    // The usual head arrives in one read: parsed where it lies, no search for its end first.
    if (prior === undefined) {
      const after = this.parseHead(data, start, end);
      if (after < 0) this.stash(data.subarray(0, end), start, Buffer.from(data.subarray(start, end)));
      return after;
    }
    const buf = Buffer.concat([prior, data.subarray(start, end)]);
    if (buf.indexOf(HEAD_END, Math.max(0, prior.length - 3)) < 0) {
      this.stash(buf, 0, buf);
      return -1;
    }
    this.pending = undefined;
    return start + this.parseHead(buf, 0, buf.length) - prior.length;
  }

  /** Keeps the start of a head that has not all arrived, refusing it at once when it already cannot be valid. */
  private stash(buf: Buffer, from: number, pending: Buffer): void {
    if (buf.length - from > MAX_HEAD_BYTES) fail('head too large');
    checkNoBareLineFeed(buf, from);
    this.pending = pending;
  }

  /**
   * Parses the head at buf[from, len) in one pass over its bytes: the index after its blank line, or -1 when
   * it has not all arrived. Strings are made only for a whole head, as slices of one latin1 copy of it.
   */
  private parseHead(buf: Buffer, from: number, len: number): number {
    // The bytes of the last final head again make the same head (parsing is a function of the bytes and of
    // noBody, which a remembered head never had): a compare, not a parse. Not for a HEAD request's answer.
    if (!this.noBody && this.memo !== undefined) {
      const again = this.memo.match(buf, from, len);
      if (again !== undefined) return this.accept(again, from + this.memo.length);
    }
    // The status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF.
    // The shortest valid head has 16 bytes: a complete one shorter than the status line's fixed part is refused, not awaited.
    if (len - from < 14) {
      const at = buf.indexOf(HEAD_END, from);
      if (at >= 0 && at + 4 <= len) fail('invalid status line');
      return -1;
    }
    if (
      buf[from] !== 0x48 ||
      buf[from + 1] !== 0x54 ||
      buf[from + 2] !== 0x54 ||
      buf[from + 3] !== 0x50 ||
      buf[from + 4] !== 0x2f ||
      buf[from + 5] !== 0x31 ||
      buf[from + 6] !== 0x2e
    )
      fail('invalid status line');
    const minor = (buf[from + 7] as number) - 0x30;
    if (buf[from + 8] !== 0x20) fail('invalid status line');
    if (minor !== 0 && minor !== 1) fail('unsupported HTTP version');
    const d0 = (buf[from + 9] as number) - 0x30;
    const d1 = (buf[from + 10] as number) - 0x30;
    const d2 = (buf[from + 11] as number) - 0x30;
    if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) fail('invalid status code');
    const status = d0 * 100 + d1 * 10 + d2;
    let i = from + 12;
    let reasonStart = i;
    if (buf[i] !== CR) {
      if (buf[i] !== 0x20) fail('invalid status line');
      reasonStart = ++i;
      while (i < len && FIELD[buf[i] as number] === 1) i++;
    }
    const reasonEnd = i;
    if (i + 1 >= len) return -1;
    if (buf[i] !== CR) fail('invalid character in the reason phrase');
    if (buf[i + 1] !== LF) fail('CR not followed by LF');
    i += 2;

    // Header lines: offsets only; strings once the whole head is there, and the list only when asked for.
    // The end-to-end lines are runs of the head between hop-by-hop lines: RUNS holds the closed runs' bounds.
    // The first run takes the status line in when a client response would begin with the same one.
    const linesAt = i;
    const withStatusLine = minor === 1 && reasonEnd > reasonStart;
    let passable = true;
    let runs = 0;
    let runStart = withStatusLine ? from : i;
    let hasDate = false;
    let fields = 0;
    let length = -3;
    /** The Transfer-Encoding value's bounds (-1: none). */
    let transferEncoding = -1;
    let transferEncodingEnd = -1;
    let close = minor === 0;
    let keepAliveTimeoutMs = -1;
    for (;;) {
      if (i >= len) return -1;
      if (buf[i] === CR) {
        if (i + 1 >= len) return -1;
        if (buf[i + 1] !== LF) fail('CR not followed by LF');
        i += 2;
        break;
      }
      const nameStart = i;
      while (i < len && TOKEN[buf[i] as number] === 1) i++;
      if (i >= len) return -1;
      if (buf[i] !== 0x3a) fail(buf[i] === CR || buf[i] === LF ? 'invalid header line' : 'invalid header name');
      if (i === nameStart) fail('invalid header line');
      const nameEnd = i++;
      while (i < len && (buf[i] === 0x20 || buf[i] === 9)) i++;
      const valueStart = i;
      while (i < len && FIELD[buf[i] as number] === 1) i++;
      if (i + 1 >= len) return -1;
      let valueEnd = i;
      while (valueEnd > valueStart && (buf[valueEnd - 1] === 0x20 || buf[valueEnd - 1] === 9)) valueEnd--;
      if (buf[i] !== CR) fail('invalid character in a header value');
      if (buf[i + 1] !== LF) fail('CR not followed by LF');
      const lineEnd = i;
      i += 2;
      if (fields++ >= MAX_HEADERS) fail('too many headers');
      const nameLength = nameEnd - nameStart;
      if (isHopByHop(buf, nameStart, nameLength)) {
        if (runStart < nameStart) {
          RUNS[runs++] = runStart;
          RUNS[runs++] = nameStart;
        }
        runStart = i;
      } else if (valueStart !== nameEnd + 2 || buf[nameEnd + 1] !== 0x20 || valueEnd !== lineEnd) passable = false;
      switch (nameLength) {
        case 4:
          hasDate ||= isName(buf, nameStart, 'date');
          break;
        case 10:
          if (isName(buf, nameStart, 'connection')) {
            if (hasToken(buf, valueStart, valueEnd, 'close')) close = true;
            // Fields it names must be dropped too: the proxy's general way finds them by name in the list.
            if (valueEnd > valueStart && !isValue(buf, valueStart, valueEnd, 'keep-alive') && !isValue(buf, valueStart, valueEnd, 'close')) passable = false;
          } else if (isName(buf, nameStart, 'keep-alive')) keepAliveTimeoutMs = timeoutParameter(buf, valueStart, valueEnd);
          break;
        case 14:
          if (isName(buf, nameStart, 'content-length')) {
            if (length !== -3) fail('duplicate Content-Length');
            length = decimal(buf, valueStart, valueEnd);
          }
          break;
        case 17:
          if (isName(buf, nameStart, 'transfer-encoding')) {
            if (transferEncoding >= 0) fail('duplicate Transfer-Encoding');
            // llhttp reads "chunked<TAB>" as another coding (the body then ends at close), a trimming parser as chunked.
            for (let k = valueEnd; k < lineEnd; k++) if (buf[k] === 9) fail('a tab after the Transfer-Encoding value');
            transferEncoding = valueStart;
            transferEncodingEnd = valueEnd;
          }
          break;
      }
    }
    if (i - 4 - from > MAX_HEAD_BYTES) fail('head too large');
    if (transferEncoding >= 0 && length !== -3) fail('both Content-Length and Transfer-Encoding');

    const text = latin1(buf, from, i);
    const reason = reasonEnd > reasonStart ? text.slice(reasonStart - from, reasonEnd - from) : '';
    const chunked = transferEncoding >= 0 && endsInChunked(text.slice(transferEncoding - from, transferEncodingEnd - from));

    const switched = status === 101 && this.upgrade;
    if (status < 200 && !switched) {
      if (status === 101) fail('unexpected 101 Switching Protocols');
      // An HTTP/1.0 (or closing) message ends the connection: no final response can follow it.
      if (close) fail('interim response on a connection that closes');
      this.events.onInformational(status, fieldList(text, linesAt - from));
      return i;
    }
    const hasContentLength = length !== -3;
    if (this.noBody || status === 204 || status === 304 || switched) length = 0;
    else if (chunked) length = CHUNKED;
    // A transfer coding that does not end in chunked: the body ends when the server closes (RFC 9112 §6.3 rule 4).
    else if (transferEncoding >= 0) length = UNTIL_CLOSE;
    else if (length === -3) length = UNTIL_CLOSE;
    const endToEndLines = passable ? runsOf(text, from, runs, runStart, i - 2) : undefined;
    const head = new ResponseHead(new HeadFacts(status, reason, length, close, text, linesAt - from, endToEndLines, withStatusLine, hasDate, hasContentLength, keepAliveTimeoutMs));
    if (!this.noBody) {
      if (this.memo !== undefined) this.memo.remember(buf, from, i, head);
      else if (this.parsedHead) (this.memo = new HeadMemo()).remember(buf, from, i, head);
      else this.parsedHead = true;
    }
    return this.accept(head, i);
  }

  /** A final head read whole, ending at index `i`: the body's framing is set up and the head handed over; returns `i`. */
  private accept(head: ResponseHead, i: number): number {
    const length = head.length;
    if (length === 0) this.state = DONE;
    else if (length === CHUNKED) {
      this.state = CHUNK_SIZE;
      this.remaining = 0;
      this.sizeDigits = 0;
    } else if (length === UNTIL_CLOSE) this.state = BODY_UNTIL_CLOSE;
    else {
      this.state = BODY_LENGTH;
      this.remaining = length;
    }
    this.framed = this.events.onResponseHead(head) && length === CHUNKED;
    if (this.state === DONE) this.events.onResponseComplete();
    return i;
  }

  /** Trailer fields after the last chunk: checked, then dropped. Returns the index after them, or -1. */
  private takeTrailers(data: Buffer, start: number, end: number): number {
    const prior = this.pending;
    const buf = prior ? Buffer.concat([prior, data.subarray(start, end)]) : data.subarray(start, end);
    // No trailers: the last chunk is followed directly by CRLF.
    if (buf.length >= 2 && buf[0] === CR && buf[1] === LF) return start + 2 - (prior?.length ?? 0);
    if (buf.length >= 1 && buf[0] !== CR && TOKEN[buf[0] as number] !== 1) fail('invalid trailer');
    const at = buf.indexOf(HEAD_END);
    if (at < 0) {
      if (buf.length > MAX_TRAILER_BYTES) fail('trailers too large');
      checkNoBareLineFeed(buf, 0);
      this.pending = Buffer.from(buf);
      return -1;
    }
    if (at > MAX_TRAILER_BYTES) fail('trailers too large');
    const text = buf.toString('latin1', 0, at);
    for (const line of text.split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon <= 0) fail('invalid trailer');
      for (let k = 0; k < colon; k++) if (TOKEN[line.charCodeAt(k)] !== 1) fail('invalid trailer name');
      checkField(line.slice(colon + 1), 'trailer value');
    }
    this.pending = undefined;
    return start + at + 4 - (prior?.length ?? 0);
  }
}

/**
 * Whether a Transfer-Encoding list ends in chunked; when it does not, the body
 * is close-delimited (RFC 9112 §6.3 rule 4). A list with anything but tokens is refused.
 */
function endsInChunked(value: string): boolean {
  const codings = value.split(',');
  for (let k = 0; k < codings.length; k++) {
    const coding = (codings[k] as string).trim().toLowerCase();
    if (coding.length === 0) fail('empty Transfer-Encoding coding');
    for (let j = 0; j < coding.length; j++) if (TOKEN[coding.charCodeAt(j)] !== 1) fail(`invalid Transfer-Encoding "${value}"`);
    if (coding === 'chunked' && k === codings.length - 1) return true;
  }
  return false;
}

/**
 * The bytes as a latin1 string: Buffer's own latin1Slice, which toString('latin1', …) ends in after
 * an encoding lookup and argument checks (present since Node 0.x, used by Node's HTTP client and undici).
 */
const latin1 = (buf: Buffer, start: number, end: number): string => (buf as Buffer & { latin1Slice(start: number, end: number): string }).latin1Slice(start, end);

/** Start and end of each run of end-to-end lines closed by a hop-by-hop line, in the head being parsed: parsing is synchronous, one table serves every parser. */
const RUNS = new Int32Array(MAX_HEADERS * 2);

/**
 * The header list (see ResponseHead.headers) of a head the parser accepted, from its text at `at`: every
 * line there is a token, `:`, a value between optional whitespace, CRLF — the head ends at an empty line.
 */
function fieldList(text: string, at: number): string[] {
  const list: string[] = [];
  for (let start = at; ; ) {
    const end = text.indexOf('\r\n', start);
    if (end === start) return list;
    const colon = text.indexOf(':', start);
    let valueStart = colon + 1;
    while (valueStart < end && isBlank(text.charCodeAt(valueStart))) valueStart++;
    let valueEnd = end;
    while (valueEnd > valueStart && isBlank(text.charCodeAt(valueEnd - 1))) valueEnd--;
    const name = text.slice(start, colon);
    const value = text.slice(valueStart, valueEnd);
    if (!thisHopOnly(name, value)) list.push(name, value);
    start = end + 2;
  }
}

const isBlank = (c: number): boolean => c === 0x20 || c === 9;

/** `Connection: keep-alive` or `close`, `Keep-Alive`: fields only this hop reads (see ResponseHead.headers). */
function thisHopOnly(name: string, value: string): boolean {
  if (name.length !== 10) return false;
  const lower = name.toLowerCase();
  if (lower === 'keep-alive') return true;
  if (lower !== 'connection') return false;
  const v = value.toLowerCase();
  return v === 'keep-alive' || v === 'close';
}

/** The end-to-end lines (see ResponseHead): the closed runs, then the last one, [lastStart, lastEnd), as slices of the head's text. */
function runsOf(text: string, from: number, runs: number, lastStart: number, lastEnd: number): string {
  let lines = '';
  for (let k = 0; k < runs; k += 2) lines += text.slice((RUNS[k] as number) - from, (RUNS[k + 1] as number) - from);
  return lastStart < lastEnd ? lines + text.slice(lastStart - from, lastEnd - from) : lines;
}

/** HOP_BY_HOP's names by length, for a name's bytes to be compared with those of its length only. */
const HOP_BY_HOP_BY_LENGTH: string[][] = [];
for (const name of HOP_BY_HOP) (HOP_BY_HOP_BY_LENGTH[name.length] ??= []).push(name);

/** Whether the token of `length` bytes at buf[at…] is a hop-by-hop field name, in any case. */
function isHopByHop(buf: Buffer, at: number, length: number): boolean {
  const names = HOP_BY_HOP_BY_LENGTH[length];
  if (names === undefined) return false;
  for (let k = 0; k < names.length; k++) if (isName(buf, at, names[k] as string)) return true;
  return false;
}

/** Whether the token at buf[at…] spells `lower` (lower-case letters and `-`) in any case; the caller checked the length. */
function isName(buf: Buffer, at: number, lower: string): boolean {
  // A token byte ORed with 0x20 equals a lower-case letter or `-` only when it is that letter (either case) or `-`.
  for (let k = 0; k < lower.length; k++) if (((buf[at + k] as number) | 0x20) !== lower.charCodeAt(k)) return false;
  return true;
}

/** Whether buf[start, end) is `lower` (lower-case letters and `-`) in any case. */
function isValue(buf: Buffer, start: number, end: number, lower: string): boolean {
  return end - start === lower.length && isName(buf, start, lower);
}

/** Whether the comma-separated list in buf[start, end) holds `lower` as one of its elements, in any case. */
function hasToken(buf: Buffer, start: number, end: number, lower: string): boolean {
  let k = start;
  while (k < end) {
    while (k < end && (buf[k] === 0x20 || buf[k] === 9 || buf[k] === 0x2c)) k++;
    const tokenStart = k;
    while (k < end && buf[k] !== 0x2c) k++;
    let tokenEnd = k;
    while (tokenEnd > tokenStart && (buf[tokenEnd - 1] === 0x20 || buf[tokenEnd - 1] === 9)) tokenEnd--;
    if (isValue(buf, tokenStart, tokenEnd, lower)) return true;
  }
  return false;
}

/**
 * The `timeout=N` parameter of a Keep-Alive value (RFC 2068 §19.7.1; what Node, Apache and uvicorn-style
 * servers send) in milliseconds: -1 when there is none or it is not 1 to 6 digits. Only a hint for the
 * pool's idle timeout, never framing: anything it cannot read is as if it were not there.
 */
function timeoutParameter(buf: Buffer, start: number, end: number): number {
  let k = start;
  while (k < end) {
    while (k < end && (buf[k] === 0x20 || buf[k] === 9 || buf[k] === 0x2c)) k++;
    const paramStart = k;
    while (k < end && buf[k] !== 0x2c) k++;
    if (k - paramStart < 9 || !isName(buf, paramStart, 'timeout=')) continue;
    let seconds = 0;
    let digits = 0;
    let at = paramStart + 8;
    for (; at < k && digits <= 6; at++, digits++) {
      const d = (buf[at] as number) - 0x30;
      if (d < 0 || d > 9) break;
      seconds = seconds * 10 + d;
    }
    while (at < k && (buf[at] === 0x20 || buf[at] === 9)) at++;
    return digits >= 1 && digits <= 6 && at === k ? seconds * 1000 : -1;
  }
  return -1;
}

/** A Content-Length value: 1 to 15 digits and nothing else (15 digits stay below 2^53). */
function decimal(buf: Buffer, start: number, end: number): number {
  if (end === start || end - start > 15) fail('invalid Content-Length');
  let n = 0;
  for (let k = start; k < end; k++) {
    const d = (buf[k] as number) - 0x30;
    if (d < 0 || d > 9) fail('invalid Content-Length');
    n = n * 10 + d;
  }
  return n;
}

function checkField(text: string, what: string): void {
  for (let k = 0; k < text.length; k++) if (FIELD[text.charCodeAt(k)] !== 1) fail(`invalid character in the ${what}`);
}

/** A head that is not complete yet may already show a line ended by LF alone, or a CR not followed by LF: refuse it now, not at the timeout. */
function checkNoBareLineFeed(buf: Buffer, from: number): void {
  for (let k = buf.indexOf(LF, from); k >= 0; k = buf.indexOf(LF, k + 1)) if (k === from || buf[k - 1] !== CR) fail('line ended by a bare LF');
  for (let k = buf.indexOf(CR, from); k >= 0 && k + 1 < buf.length; k = buf.indexOf(CR, k + 1)) if (buf[k + 1] !== LF) fail('CR not followed by LF');
}
