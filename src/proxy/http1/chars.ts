/**
 * Byte classes of HTTP/1.1 (RFC 9110 §5.6.2, RFC 9112 §3): lookup tables indexed
 * by a latin1 byte, so the parsers test one array slot per byte.
 */

function table(accepts: (c: number) => boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = accepts(c) ? 1 : 0;
  return t;
}

const TCHAR_SYMBOLS = "!#$%&'*+-.^_`|~";

/** tchar: what a method, a header name or a chunk-extension name is made of. */
export const TOKEN = table((c) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || TCHAR_SYMBOLS.includes(String.fromCharCode(c)));

/** A header value byte: VCHAR, SP, HTAB or obs-text — never a control byte (NUL, CR, LF, DEL…). */
export const FIELD_VALUE = table((c) => c === 0x09 || (c >= 0x20 && c !== 0x7f));

/**
 * A request-target byte: visible ASCII only. Stricter than RFC 3986 (which allows
 * no raw bytes ≥ 0x80 either); spaces and controls end or break the line.
 */
export const TARGET = table((c) => c > 0x20 && c < 0x7f);

/** An authority's bytes in an absolute-form target: reg-name, IP literal and port, no `@` (RFC 3986 §3.2). */
export const AUTHORITY = table((c) => (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) || "-._~!$&'()*+,;=%:[]".includes(String.fromCharCode(c)));

/** A Host value's reg-name or IPv4 bytes (RFC 3986 §3.2.2: unreserved, sub-delims, pct-encoding's `%`). */
export const REG_NAME = table((c) => (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) || "-._~!$&'()*+,;=%".includes(String.fromCharCode(c)));

/** The bytes inside a bracketed IPv6 literal of a Host value. */
export const IPV6_LITERAL = table((c) => (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66) || c === 0x3a || c === 0x2e);

/** qdtext and quoted-pair's second byte in a chunk extension's quoted-string (RFC 9110 §5.6.4). */
export const QDTEXT = table((c) => c === 0x09 || c === 0x20 || c === 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) || c >= 0x80);
export const QUOTED_PAIR = table((c) => c === 0x09 || (c >= 0x20 && c !== 0x7f));

/**
 * Whether the bytes at buf[at…] spell `lower` (lower-case letters, digits and `-`) in any case; the caller
 * checked the length. For the bytes of a token or a field value (no control bytes), a byte ORed with 0x20
 * equals such a character only when it is that character, a letter in either case.
 */
export function isName(buf: Uint8Array, at: number, lower: string): boolean {
  for (let k = 0; k < lower.length; k++) if (((buf[at + k] as number) | 0x20) !== lower.charCodeAt(k)) return false;
  return true;
}

/** The value of a hex digit, or -1. */
export function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

export const CR = 0x0d;
export const LF = 0x0a;
export const SP = 0x20;
export const HTAB = 0x09;
export const COLON = 0x3a;
