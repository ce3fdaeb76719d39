/**
 * The request-head parser: request line and header fields read from latin1
 * bytes (never UTF-8 decoded), at least as strict as llhttp. Anything that two
 * HTTP/1.1 implementations could frame differently is refused here, before a
 * byte is forwarded: bare CR or LF, obs-fold, whitespace before the colon,
 * control bytes, a missing or repeated Host, any repeated Content-Length, a
 * Content-Length beside Transfer-Encoding, a Transfer-Encoding other than
 * exactly `chunked` (or on HTTP/1.0), a version other than 1.0 or 1.1.
 */
import { METHODS } from '../../node-http.ts';
import { AUTHORITY, COLON, CR, FIELD_VALUE, HTAB, LF, SP, TARGET, TOKEN } from './chars.ts';

/** The methods llhttp knows (Node's list): any other token is refused, as llhttp refuses it. */
const KNOWN_METHODS = new Set(METHODS);

/** Header fields a head may carry before it is refused with 431 (Apache's LimitRequestFields default). */
export const MAX_HEADER_COUNT = 100;
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

const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

/**
 * Where the head that starts at `start` ends (the index just past its blank
 * line), or -1 when it has not all arrived. `scanned` is how far an earlier
 * call looked, so a head trickled in many packets is not searched again from its start.
 */
export function findHeadEnd(buf: Buffer, start: number, scanned: number): number {
  const at = buf.indexOf(HEAD_END, Math.max(start, scanned - 3));
  return at < 0 ? -1 : at + 4;
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

/** Lower-case ASCII letters compare equal to `lower` (which is lower-case). */
function sameName(name: string, lower: string): boolean {
  return name.length === lower.length && (name === lower || name.toLowerCase() === lower);
}

/** Parses the complete head buf[start, end) (end from findHeadEnd). */
export function parseRequestHead(buf: Buffer, start: number, end: number, limit: number): RequestHead | HeadError {
  if (end - start > limit) return overflow(buf, start, limit);
  let i = start;
  // Request line: method SP request-target SP HTTP-version CRLF (RFC 9112 §3).
  while (TOKEN[buf[i] as number]) i++;
  if (i === start || buf[i] !== SP) return new HeadError(400, 'invalid method');
  const method = buf.toString('latin1', start, i);
  if (!KNOWN_METHODS.has(method)) return new HeadError(400, 'unknown method');
  // A tunnel request: Velocity is no forward proxy (and llhttp would frame what follows as a tunnel, not a body).
  if (method === 'CONNECT') return new HeadError(405, 'CONNECT is not supported');
  const targetStart = ++i;
  while (TARGET[buf[i] as number]) i++;
  if (i === targetStart || buf[i] !== SP) return new HeadError(400, 'invalid request target');
  if (!validTargetForm(buf, targetStart, i)) return new HeadError(400, 'invalid request target');
  const target = buf.toString('latin1', targetStart, i);
  i++;
  if (buf[i] !== 0x48 || buf[i + 1] !== 0x54 || buf[i + 2] !== 0x54 || buf[i + 3] !== 0x50 || buf[i + 4] !== 0x2f) return new HeadError(400, 'invalid HTTP version');
  const major = (buf[i + 5] as number) - 0x30;
  const minor = (buf[i + 7] as number) - 0x30;
  if (major < 0 || major > 9 || buf[i + 6] !== 0x2e || minor < 0 || minor > 9 || buf[i + 8] !== CR || buf[i + 9] !== LF) return new HeadError(400, 'invalid HTTP version');
  // Another major version is one Velocity does not speak (505); an unknown 1.x is a malformed request, as llhttp has it (400).
  if (major !== 1) return new HeadError(505, `HTTP/${major}.${minor} is not supported`);
  if (minor > 1) return new HeadError(400, `HTTP/1.${minor} is not a known version`);
  i += 10;

  const rawHeaders: string[] = [];
  let contentLength = -1;
  let chunked = false;
  let transferEncoding = false;
  let hosts = 0;
  let close = false;
  let keepAliveToken = false;
  let upgradeToken = false;
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
    if (rawHeaders.length >= MAX_HEADER_COUNT * 2) return new HeadError(431, 'too many header fields');
    const name = buf.toString('latin1', nameStart, nameEnd);
    const value = buf.toString('latin1', valueStart, valueEnd);
    rawHeaders.push(name, value);
    switch (nameEnd - nameStart) {
      case 4:
        if (sameName(name, 'host')) hosts++;
        break;
      case 6:
        // HTTP/1.0 predates Expect: a 1.0 client's Expect is ignored, as Node does.
        if (minor === 1 && sameName(name, 'expect')) {
          if (value.toLowerCase() !== '100-continue') return new HeadError(417, 'unsupported expectation');
          expectContinue = true;
        }
        break;
      case 7:
        if (sameName(name, 'upgrade')) upgradeHeader = true;
        break;
      case 10:
        if (sameName(name, 'connection')) {
          for (const token of value.toLowerCase().split(',')) {
            const t = token.trim();
            if (t === 'close') close = true;
            else if (t === 'keep-alive') keepAliveToken = true;
            else if (t === 'upgrade') upgradeToken = true;
          }
        }
        break;
      case 14:
        if (sameName(name, 'content-length')) {
          if (contentLength >= 0) return new HeadError(400, 'more than one Content-Length');
          contentLength = parseLength(value);
          if (contentLength < 0) return new HeadError(400, 'invalid Content-Length');
        }
        break;
      case 17:
        if (sameName(name, 'transfer-encoding')) {
          if (transferEncoding) return new HeadError(400, 'more than one Transfer-Encoding');
          transferEncoding = true;
          if (value.length !== 7 || value.toLowerCase() !== 'chunked') return new HeadError(400, 'a Transfer-Encoding other than chunked');
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
    rawHeaders,
    contentLength,
    chunked,
    keepAlive: minor === 1 ? !close : keepAliveToken && !close,
    expectContinue,
    upgrade: upgradeHeader && upgradeToken,
    length: i - start,
  };
}

/** 1*DIGIT and nothing else (no sign, no list, no spaces); -1 when not. */
function parseLength(value: string): number {
  if (value.length === 0 || value.length > MAX_LENGTH_DIGITS) return -1;
  let n = 0;
  for (let k = 0; k < value.length; k++) {
    const d = value.charCodeAt(k) - 0x30;
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
