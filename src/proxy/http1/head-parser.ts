/**
 * The request-head parser: request line and header fields read from latin1
 * bytes (never UTF-8 decoded), at least as strict as llhttp. Anything that two
 * HTTP/1.1 implementations could frame differently is refused here, before a
 * byte is forwarded: bare CR or LF, obs-fold, whitespace before the colon,
 * control bytes, a missing or repeated Host, any repeated Content-Length, a
 * Content-Length beside Transfer-Encoding, a Transfer-Encoding other than
 * exactly `chunked` (or on HTTP/1.0), a version other than 1.0 or 1.1.
 */
import type { Buffer } from 'node:buffer';
import { METHODS } from '../../node-http.ts';
import { AUTHORITY, COLON, CR, FIELD_VALUE, HTAB, IPV6_LITERAL, isName, LF, REG_NAME, SP, TARGET, TOKEN } from './chars.ts';

/** The methods llhttp knows (Node's list): any other token is refused, as llhttp refuses it. */
const KNOWN_METHODS = new Set(METHODS);

/** Header fields a head may carry before it is refused with 431 (Apache's LimitRequestFields default). */
export const MAX_HEADER_COUNT = 100;
/**
 * The header fields of the head being parsed, copied into a list of their exact size at the end: a list
 * grown by push took 200 bytes for wrk's one header and 600 for a browser's dozen, the copy 80 and 260.
 * Parsing is synchronous, so one serves every head (it holds on to the last head's strings until the next).
 */
const FIELDS: string[] = new Array<string>(MAX_HEADER_COUNT * 2).fill('');
/** Digits in a Content-Length: 15 decimal digits stay below 2^53. */
const MAX_LENGTH_DIGITS = 15;

export interface RequestHead {
  method: string;
  /** The request target exactly as sent. */
  target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  /** name, value, name, value… — names as sent, values without surrounding whitespace. */
  rawHeaders: string[];
  /** The body's length when framed by Content-Length, else -1. */
  contentLength: number;
  chunked: boolean;
  /** What the client asked for the connection (before the server adds its own reasons to close). */
  keepAlive: boolean;
  expectContinue: boolean;
  /** An Upgrade header was sent (with `Connection: upgrade`). */
  upgrade: boolean;
  /** The Host value (when there is one) has the syntax checkRequestHead asks of it (see wellFormedHost). */
  hostWellFormed: boolean;
  /** Bytes of the head, the blank line included. */
  length: number;
}

/** A refused head: the status to answer with (then the connection closes) and why. */
export class HeadError {
  readonly status: number;
  readonly reason: string;

  constructor(status: number, reason: string) {
    this.status = status;
    this.reason = reason;
  }
}

/**
 * Where the head that starts at `start` ends (the index just past its blank
 * line), or -1 when it has not all arrived in buf[0, n). `scanned` is how far an earlier
 * call looked, so a head trickled in many packets is not searched again from its start.
 * Searched in JavaScript, not with buf.indexOf: a head is short, and the call into C++ costs more than the scan.
 */
export function findHeadEnd(buf: Buffer, start: number, scanned: number, n = buf.length): number {
  // k is where the blank line's LF would be. A byte that is neither CR nor LF cannot be in CRLFCRLF, so the
  // next possible end is 4 further; an LF that does not end one can only be its second byte (2 further), a CR its first or third (1).
  let k = Math.max(start, scanned - 3) + 3;
  while (k < n) {
    const c = buf[k] as number;
    if (c === LF) {
      if (buf[k - 1] === CR && buf[k - 2] === LF && buf[k - 3] === CR) return k + 1;
      k += 2;
    } else k += c === CR ? 1 : 4;
  }
  return -1;
}

/**
 * A defect visible before the head is complete: a bare LF or CR in the bytes
 * from `from` on, or a head past the size limit (414 when the request line alone is).
 * Lets a bad client be refused at once instead of at the header timeout.
 */
export function checkPartialHead(buf: Buffer, start: number, from: number, limit: number): HeadError | undefined {
  for (let i = Math.max(start, from); i < buf.length; i++) {
    const c = buf[i] as number;
    if (c === LF && (i === start || buf[i - 1] !== CR)) return new HeadError(400, 'bare LF in the request head');
    if (c === CR && i + 1 < buf.length && buf[i + 1] !== LF) return new HeadError(400, 'bare CR in the request head');
  }
  if (buf.length - start > limit) return overflow(buf, start, limit);
  return undefined;
}

function overflow(buf: Buffer, start: number, limit: number): HeadError {
  const lineEnd = buf.indexOf(LF, start);
  return lineEnd < 0 || lineEnd - start >= limit ? new HeadError(414, 'request line too long') : new HeadError(431, 'request head too large');
}

/** The method in buf[start, end) (case-sensitive), as one string per method (the common ones without a copy), or undefined when llhttp does not know it. */
function knownMethod(buf: Buffer, start: number, end: number): string | undefined {
  const b1 = buf[start + 1];
  const b2 = buf[start + 2];
  switch (end - start) {
    case 3:
      if (buf[start] === 0x47 && b1 === 0x45 && b2 === 0x54) return 'GET';
      if (buf[start] === 0x50 && b1 === 0x55 && b2 === 0x54) return 'PUT';
      break;
    case 4:
      if (buf[start] === 0x50 && b1 === 0x4f && b2 === 0x53 && buf[start + 3] === 0x54) return 'POST';
      if (buf[start] === 0x48 && b1 === 0x45 && b2 === 0x41 && buf[start + 3] === 0x44) return 'HEAD';
      break;
  }
  const method = buf.toString('latin1', start, end);
  return KNOWN_METHODS.has(method) ? method : undefined;
}

/**
 * Header names clients commonly send, lower-case. A name read in exactly this spelling or in its usual
 * capitalisation (`User-Agent`) is this one string (interned: no copy, and no string-table lookup when it
 * becomes a property key); LOWER_NAMES gives its lower-case form without lower-casing it.
 */
const COMMON_NAMES = [
  'host',
  'user-agent',
  'accept',
  'accept-encoding',
  'accept-language',
  'connection',
  'content-type',
  'content-length',
  'cookie',
  'referer',
  'origin',
  'authorization',
  'cache-control',
  'pragma',
  'upgrade',
  'upgrade-insecure-requests',
  'if-none-match',
  'if-modified-since',
  'x-forwarded-for',
  'x-request-id',
  'x-requested-with',
  'sec-fetch-dest',
  'sec-fetch-mode',
  'sec-fetch-site',
  'sec-fetch-user',
  'priority',
  'dnt',
  'te',
];
const capitalised = (lower: string) => lower.replace(/(^|-)([a-z])/g, (_, dash: string, letter: string) => dash + letter.toUpperCase());
/** Per name length, the spellings interned (lower-case and capitalised). */
const INTERNED: string[][] = [];
/** An interned spelling → its lower-case form. */
export const LOWER_NAMES = new Map<string, string>();
for (const lower of COMMON_NAMES) {
  for (const spelling of [lower, capitalised(lower)]) {
    (INTERNED[lower.length] ??= []).push(spelling);
    LOWER_NAMES.set(spelling, lower);
  }
}

/** The header name in buf[start, end) when it is a common spelling (an interned string), else undefined. */
function internedName(buf: Buffer, start: number, end: number): string | undefined {
  const spellings = INTERNED[end - start];
  if (spellings !== undefined) {
    for (let k = 0; k < spellings.length; k++) {
      const spelling = spellings[k] as string;
      let j = 0;
      while (j < spelling.length && buf[start + j] === spelling.charCodeAt(j)) j++;
      if (j === spelling.length) return spelling;
    }
  }
  return undefined;
}

/**
 * The last short request target and the last Host value read, given again for the same bytes: requests
 * repeat them (the Host nearly always), and the same string object spares the copy — for a head like
 * wrk's, the whole head's — and makes comparing it with the last one (the router's remembered Host) a
 * pointer test rather than a call into V8's runtime. Each is a string of its own, not a slice of a head's
 * text: a slice's characters are read through its parent, which made comparing them slower than the copy
 * spared. A target is remembered only up to SHORT_TARGET bytes (`/`, `/healthz`): a longer one varies more
 * and costs more to compare.
 */
const SHORT_TARGET = 12;
let lastTarget = '';
let lastHost = '';

/** Whether buf[start, end) holds the characters of `text`. */
function sameBytes(buf: Buffer, start: number, end: number, text: string): boolean {
  if (end - start !== text.length) return false;
  for (let k = 0; k < text.length; k++) if (buf[start + k] !== text.charCodeAt(k)) return false;
  return true;
}

/** The bytes as a latin1 string: Buffer's own latin1Slice, which toString('latin1', …) ends in after an encoding lookup and argument checks. */
const latin1 = (buf: Buffer, start: number, end: number): string => (buf as Buffer & { latin1Slice(start: number, end: number): string }).latin1Slice(start, end);

/** Tokens of a Connection value that matter to the server. */
const CLOSE = 1;
const KEEP_ALIVE = 2;
const UPGRADE = 4;

/** Which of close, keep-alive and upgrade the comma-separated list in buf[start, end) names, in any case. */
function connectionTokens(buf: Buffer, start: number, end: number): number {
  let found = 0;
  let k = start;
  while (k < end) {
    while (k < end && (buf[k] === SP || buf[k] === HTAB || buf[k] === 0x2c)) k++;
    const tokenStart = k;
    while (k < end && buf[k] !== 0x2c) k++;
    let tokenEnd = k;
    while (tokenEnd > tokenStart && (buf[tokenEnd - 1] === SP || buf[tokenEnd - 1] === HTAB)) tokenEnd--;
    const n = tokenEnd - tokenStart;
    if (n === 5 && isName(buf, tokenStart, 'close')) found |= CLOSE;
    else if (n === 10 && isName(buf, tokenStart, 'keep-alive')) found |= KEEP_ALIVE;
    else if (n === 7 && isName(buf, tokenStart, 'upgrade')) found |= UPGRADE;
  }
  return found;
}

/** Parses the complete head buf[start, end) (end from findHeadEnd). */
export function parseRequestHead(buf: Buffer, start: number, end: number, limit: number): RequestHead | HeadError {
  if (end - start > limit) return overflow(buf, start, limit);
  let i = start;
  // Request line: method SP request-target SP HTTP-version CRLF (RFC 9112 §3).
  while (TOKEN[buf[i] as number]) i++;
  if (i === start || buf[i] !== SP) return new HeadError(400, 'invalid method');
  const method = knownMethod(buf, start, i);
  if (method === undefined) return new HeadError(400, 'unknown method');
  // A tunnel request: Velocity is no forward proxy (and llhttp would frame what follows as a tunnel, not a body).
  if (method === 'CONNECT') return new HeadError(405, 'CONNECT is not supported');
  const targetStart = ++i;
  while (TARGET[buf[i] as number]) i++;
  if (i === targetStart || buf[i] !== SP) return new HeadError(400, 'invalid request target');
  if (!validTargetForm(buf, targetStart, i)) return new HeadError(400, 'invalid request target');
  const targetEnd = i;
  i++;
  if (buf[i] !== 0x48 || buf[i + 1] !== 0x54 || buf[i + 2] !== 0x54 || buf[i + 3] !== 0x50 || buf[i + 4] !== 0x2f) return new HeadError(400, 'invalid HTTP version');
  const major = (buf[i + 5] as number) - 0x30;
  const minor = (buf[i + 7] as number) - 0x30;
  if (major < 0 || major > 9 || buf[i + 6] !== 0x2e || minor < 0 || minor > 9 || buf[i + 8] !== CR || buf[i + 9] !== LF) return new HeadError(400, 'invalid HTTP version');
  // Another major version is one Velocity does not speak (505); an unknown 1.x is a malformed request, as llhttp has it (400).
  if (major !== 1) return new HeadError(505, `HTTP/${major}.${minor} is not supported`);
  if (minor > 1) return new HeadError(400, `HTTP/1.${minor} is not a known version`);
  i += 10;

  // One latin1 copy of the head, made when a string is first wanted that is not interned or the last one
  // read: the target, names and values are slices of it.
  let text: string | undefined;
  let target = lastTarget;
  if (!sameBytes(buf, targetStart, targetEnd, target)) {
    text = latin1(buf, start, end);
    target = text.slice(targetStart - start, targetEnd - start);
    // A slice this short is a copy (V8 makes sliced strings of 13 characters and more).
    if (target.length <= SHORT_TARGET) lastTarget = target;
  }
  let fields = 0;
  let contentLength = -1;
  let chunked = false;
  let transferEncoding = false;
  let hosts = 0;
  let hostWellFormed = true;
  let connection = 0;
  let upgradeHeader = false;
  let expectContinue = false;
  for (;;) {
    const c = buf[i] as number;
    if (c === CR) {
      if (buf[i + 1] !== LF) return new HeadError(400, 'bare CR in the request head');
      i += 2;
      break;
    }
    if (c === SP || c === HTAB) return new HeadError(400, 'obs-fold (a header line starting with whitespace)');
    const nameStart = i;
    while (TOKEN[buf[i] as number]) i++;
    if (i === nameStart) return new HeadError(400, 'invalid header name');
    if (buf[i] !== COLON) return new HeadError(400, buf[i] === SP || buf[i] === HTAB ? 'whitespace before the colon' : 'invalid header name');
    const nameEnd = i++;
    while (buf[i] === SP || buf[i] === HTAB) i++;
    const valueStart = i;
    while (FIELD_VALUE[buf[i] as number]) i++;
    if (buf[i] !== CR || buf[i + 1] !== LF) return new HeadError(400, 'invalid byte in a header value');
    const lineEnd = i;
    let valueEnd = i;
    while (valueEnd > valueStart && (buf[valueEnd - 1] === SP || buf[valueEnd - 1] === HTAB)) valueEnd--;
    i += 2;
    if (fields >= MAX_HEADER_COUNT * 2) return new HeadError(431, 'too many header fields');
    const host = nameEnd - nameStart === 4 && isName(buf, nameStart, 'host');
    let value: string | undefined;
    if (host) {
      if (!sameBytes(buf, valueStart, valueEnd, lastHost)) lastHost = latin1(buf, valueStart, valueEnd);
      value = lastHost;
    }
    const name = internedName(buf, nameStart, nameEnd);
    if (name === undefined || value === undefined) text ??= latin1(buf, start, end);
    FIELDS[fields++] = name ?? (text as string).slice(nameStart - start, nameEnd - start);
    FIELDS[fields++] = value ?? (text as string).slice(valueStart - start, valueEnd - start);
    switch (nameEnd - nameStart) {
      case 4:
        if (host) {
          hosts++;
          hostWellFormed = wellFormedHost(buf, valueStart, valueEnd);
        }
        break;
      case 6:
        // HTTP/1.0 predates Expect: a 1.0 client's Expect is ignored, as Node does.
        if (minor === 1 && isName(buf, nameStart, 'expect')) {
          if (valueEnd - valueStart !== 12 || !isName(buf, valueStart, '100-continue')) return new HeadError(417, 'unsupported expectation');
          expectContinue = true;
        }
        break;
      case 7:
        if (isName(buf, nameStart, 'upgrade')) upgradeHeader = true;
        break;
      case 10:
        if (isName(buf, nameStart, 'connection')) connection |= connectionTokens(buf, valueStart, valueEnd);
        break;
      case 14:
        if (isName(buf, nameStart, 'content-length')) {
          if (contentLength >= 0) return new HeadError(400, 'more than one Content-Length');
          contentLength = parseLength(buf, valueStart, valueEnd);
          if (contentLength < 0) return new HeadError(400, 'invalid Content-Length');
        }
        break;
      case 17:
        if (isName(buf, nameStart, 'transfer-encoding')) {
          if (transferEncoding) return new HeadError(400, 'more than one Transfer-Encoding');
          transferEncoding = true;
          if (valueEnd - valueStart !== 7 || !isName(buf, valueStart, 'chunked')) return new HeadError(400, 'a Transfer-Encoding other than chunked');
          // llhttp refuses "chunked" followed by a tab; a parser that trims it reads chunked.
          for (let k = valueEnd; k < lineEnd; k++) if (buf[k] === HTAB) return new HeadError(400, 'a tab after the Transfer-Encoding value');
          chunked = true;
        }
        break;
    }
  }
  if (transferEncoding && minor === 0) return new HeadError(400, 'Transfer-Encoding in an HTTP/1.0 request');
  if (transferEncoding && contentLength >= 0) return new HeadError(400, 'both Content-Length and Transfer-Encoding');
  if (hosts > 1) return new HeadError(400, 'more than one Host header');
  if (hosts === 0 && minor === 1) return new HeadError(400, 'missing Host header');
  return {
    method,
    target,
    minor,
    rawHeaders: FIELDS.slice(0, fields),
    contentLength,
    chunked,
    keepAlive: (connection & CLOSE) === 0 && (minor === 1 || (connection & KEEP_ALIVE) !== 0),
    expectContinue,
    upgrade: upgradeHeader && (connection & UPGRADE) !== 0,
    hostWellFormed,
    length: i - start,
  };
}

/**
 * buf[start, end) is empty, or a reg-name or IPv4 address, or an IPv6 literal in brackets, then an optional
 * `:` and up to 5 digits: the Host syntax request-head.ts checks (its HOST pattern), read here on the bytes
 * so the handler need not run the pattern on every request.
 */
export function wellFormedHost(buf: Uint8Array, start: number, end: number): boolean {
  if (start === end) return true;
  let i = start;
  if (buf[i] === 0x5b) {
    const from = ++i;
    while (i < end && IPV6_LITERAL[buf[i] as number]) i++;
    if (i === from || i === end || buf[i] !== 0x5d) return false;
    i++;
  } else {
    while (i < end && REG_NAME[buf[i] as number]) i++;
    if (i === start) return false;
  }
  if (i === end) return true;
  if (buf[i] !== COLON || end - i - 1 > 5) return false;
  for (i++; i < end; i++) if ((buf[i] as number) < 0x30 || (buf[i] as number) > 0x39) return false;
  return true;
}

/** buf[start, end) is 1*DIGIT and nothing else (no sign, no list, no spaces): its value, else -1. */
function parseLength(buf: Buffer, start: number, end: number): number {
  if (end === start || end - start > MAX_LENGTH_DIGITS) return -1;
  let n = 0;
  for (let k = start; k < end; k++) {
    const d = (buf[k] as number) - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * origin-form (`/…`), asterisk-form (`*`) or absolute-form `http(s)://authority[/…|?…]`
 * whose authority holds only host and port bytes (no userinfo: RFC 9110 §4.2.4).
 * The forms themselves are checked further by checkRequestHead (request-head.ts).
 */
function validTargetForm(buf: Buffer, start: number, end: number): boolean {
  const first = buf[start];
  if (first === 0x2f) return true;
  if (first === 0x2a) return end - start === 1;
  let i = start;
  while (i < end && ((buf[i] as number) | 0x20) >= 0x61 && ((buf[i] as number) | 0x20) <= 0x7a) i++;
  const scheme = buf.toString('latin1', start, i).toLowerCase();
  if ((scheme !== 'http' && scheme !== 'https') || buf[i] !== 0x3a || buf[i + 1] !== 0x2f || buf[i + 2] !== 0x2f) return false;
  i += 3;
  const authorityStart = i;
  while (i < end && AUTHORITY[buf[i] as number]) i++;
  return i > authorityStart && (i === end || buf[i] === 0x2f || buf[i] === 0x3f);
}
