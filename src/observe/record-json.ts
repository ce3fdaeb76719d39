/**
 * One access-log record as a JSON line, without the generic JSON.stringify: it
 * showed in perf on the data path (a spread copy of the record, then a walk of
 * its properties). The fields are declared once below — the type makes the table
 * name every field of RequestRecord — and compiled into one function that appends
 * the line's UTF-8 bytes to the access log's pending buffer (line-bytes.ts). The
 * bytes are those of `JSON.stringify({ ...record, time: ISO })` written as UTF-8,
 * the durations rounded to the microsecond first (see `ms`): same keys in the same
 * order, undefined fields left out, non-finite numbers as null, strings escaped by
 * JSON.stringify whenever they hold a character that needs it.
 */
import type { RequestRecord } from './events.ts';
import { LineBytes, SLACK } from './line-bytes.ts';

type Kind = 'time' | 'string' | 'number' | 'ms';

/** Every field of a record, in the record's own order, with how it is written. */
const FIELDS: { readonly [K in keyof Required<RequestRecord>]: Kind } = {
  time: 'time',
  requestId: 'string',
  clientIp: 'string',
  method: 'string',
  host: 'string',
  path: 'string',
  protocol: 'string',
  status: 'number',
  bytesIn: 'number',
  bytesOut: 'number',
  service: 'string',
  server: 'string',
  upstreamFirstByteMs: 'ms',
  upstreamMs: 'ms',
  totalMs: 'ms',
  retries: 'number',
  queueWaitMs: 'ms',
  decision: 'string',
  retryDenied: 'string',
  errorCode: 'string',
  userAgent: 'string',
  traceId: 'string',
  spanId: 'string',
  grpcMethod: 'string',
  grpcStatus: 'number',
};

/**
 * Fields whose values usually repeat from one record to the next: the same client connection, host
 * and service, a GET answered 200 without retries, queueing or errors. Each run of consecutive
 * ones is written once and its bytes kept; a record whose values in the run are all equal (===) to the
 * last written ones gets those bytes copied in one call. Per character, the string loop (str) was most
 * of a line's cost (~2 ns a character, ~180 characters a record). Values that change per request
 * (ids, path, durations), per response (bytesOut) or per pick (server: a policy spreads a service's
 * requests over its servers) stay out: a run that differs is written as before, then kept, which
 * costs more than writing it.
 */
const REPEATING: ReadonlySet<keyof RequestRecord> = new Set<keyof RequestRecord>([
  'clientIp',
  'method',
  'host',
  'protocol',
  'status',
  'bytesIn',
  'service',
  'retries',
  'queueWaitMs',
  'decision',
  'retryDenied',
  'errorCode',
  'userAgent',
]);

/**
 * A JSON string's characters in UTF-8, escape check and copy in one pass; a string
 * holding a quote, backslash, control character or surrogate is escaped by
 * JSON.stringify instead (its `\uXXXX` escapes for lone surrogates included).
 */
function str(o: LineBytes, v: string): void {
  const n = v.length;
  let at = o.length;
  if (at + 3 * n + SLACK > o.bytes.length) o.reserve(3 * n);
  const b = o.bytes;
  // Printable ASCII, the usual case, in a loop of its own; the rest from the first other character on.
  let i = 0;
  for (; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) break;
    b[at + i] = c;
  }
  at += i;
  for (; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x80) {
      if (c < 0x20 || c === 0x22 || c === 0x5c) {
        escaped(o, v);
        return;
      }
      b[at++] = c;
    } else if (c < 0x800) {
      b[at++] = 0xc0 | (c >> 6);
      b[at++] = 0x80 | (c & 0x3f);
    } else if (c >= 0xd800 && c <= 0xdfff) {
      escaped(o, v);
      return;
    } else {
      b[at++] = 0xe0 | (c >> 12);
      b[at++] = 0x80 | ((c >> 6) & 0x3f);
      b[at++] = 0x80 | (c & 0x3f);
    }
  }
  o.length = at;
}

function escaped(o: LineBytes, v: string): void {
  o.text(JSON.stringify(v).slice(1, -1));
}

/** Room every number has: the longest a double prints in JSON is 24 characters (-1.2345678901234567e-308). */
const NUMBER_ROOM = 24;

/**
 * Integers digit by digit; other numbers through JSON.stringify, which writes a
 * finite number as its ToString, and NaN or ±Infinity as null — and, unlike
 * String(), does not fill V8's number-string cache with them.
 */
function num(o: LineBytes, v: number): void {
  if ((v | 0) !== v) {
    o.ascii(JSON.stringify(v));
    return;
  }
  if (v < 0) {
    o.bytes[o.length++] = 0x2d;
    v = -v;
  }
  digits(o, v);
}

/** A non-negative integer below 2^53, within the room the record reserved (NUMBER_ROOM per number field). */
function digits(o: LineBytes, v: number): void {
  const b = o.bytes;
  let at = o.length;
  let n = 1;
  for (let x = v; x >= 10; x = Math.floor(x / 10)) n++;
  at += n;
  o.length = at;
  do {
    b[--at] = 0x30 + (v % 10);
    v = Math.floor(v / 10);
  } while (v > 0);
}

/** Past this many microseconds a duration (≈ 31 years) is written as JSON.stringify writes it. */
const MS_EXACT = 1e15;
/** Below this many microseconds (≈ 36 minutes: every duration but the longest streams') a duration is printed in int32 arithmetic. */
const MS_INT32 = 0x7fffffff;

/**
 * A duration in milliseconds, rounded to the microsecond: the integer part, then
 * up to three decimals without trailing zeros — the text JSON.stringify gives for
 * the rounded number (µs_count / 1000), printed by integer arithmetic. The durations
 * are fresh doubles every record, and V8's shortest-round-trip printer behind
 * JSON.stringify cost ~170 ns each (three a record). Peers log coarser: nginx's
 * $request_time has millisecond resolution, HAProxy and Envoy log whole milliseconds. NaN and ±Infinity
 * are written as null, as JSON.stringify writes them. Below MS_INT32 the digits come from int32
 * divisions (`| 0`), which TurboFan makes multiplications by a constant: with doubles' divisions this
 * and `time` took ~20 % of a line's perf samples, ~13 % after.
 */
function ms(o: LineBytes, v: number): void {
  const scaled = Math.abs(v) * 1000;
  if (scaled < MS_INT32) {
    const us = Math.round(scaled) | 0;
    if (v < 0 && us !== 0) o.bytes[o.length++] = 0x2d;
    const whole = (us / 1000) | 0;
    if (whole < 10) o.bytes[o.length++] = 0x30 + whole;
    else digits(o, whole);
    decimals(o, us - whole * 1000);
    return;
  }
  const us = Math.round(scaled);
  if (!(us < MS_EXACT)) {
    o.ascii(JSON.stringify(v));
    return;
  }
  // Not zero here: at least MS_INT32.
  if (v < 0) o.bytes[o.length++] = 0x2d;
  const whole = Math.floor(us / 1000);
  digits(o, whole);
  decimals(o, (us - whole * 1000) | 0);
}

/** The decimals of a duration's `us` (0–999) microseconds past its whole milliseconds: `.` and up to three digits, no trailing zeros; none for 0. */
function decimals(o: LineBytes, us: number): void {
  if (us === 0) return;
  const b = o.bytes;
  let at = o.length;
  const hundreds = (us / 100) | 0;
  us -= hundreds * 100;
  b[at++] = 0x2e;
  b[at++] = 0x30 + hundreds;
  if (us !== 0) {
    const tens = (us / 10) | 0;
    us -= tens * 10;
    b[at++] = 0x30 + tens;
    if (us !== 0) b[at++] = 0x30 + us;
  }
  o.length = at;
}

/** The longest time text: an extended year, `+275760-09-13T00:00:00.000Z`. */
const ISO_ROOM = 27;
/** The ISO 8601 text of the current second up to its '.', as bytes: it changes once a second. */
const isoPrefix = new Uint8Array(ISO_ROOM + 1);
/** The prefix read four bytes at a time (one more byte than ISO_ROOM: the last word of the longest prefix). */
const isoPrefixWords = new DataView(isoPrefix.buffer);
let isoPrefixLength = 0;
let isoSecond = Number.NaN;

/**
 * ISO 8601 time of an epoch ms, toISOString's text: the second's prefix (toISOString
 * once a second; per record it showed in perf, and was a string to copy), then the
 * milliseconds and 'Z'.
 */
function time(o: LineBytes, epochMs: number): void {
  // As Date does: a fraction of a millisecond is dropped toward zero.
  const ms = Math.trunc(epochMs);
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    const text = new Date(second * 1000).toISOString();
    isoPrefixLength = text.length - 4;
    for (let i = 0; i < isoPrefixLength; i++) isoPrefix[i] = text.charCodeAt(i);
    isoSecond = second;
  }
  const b = o.bytes;
  const view = o.view;
  let at = o.length;
  // Four bytes a store; the last may store up to three past the prefix, which the milliseconds overwrite.
  for (let i = 0; i < isoPrefixLength; i += 4) view.setUint32(at + i, isoPrefixWords.getUint32(i, true), true);
  at += isoPrefixLength;
  // The milliseconds' digits in int32 arithmetic, as in ms().
  let milli = (ms - second * 1000) | 0;
  const hundreds = (milli / 100) | 0;
  milli -= hundreds * 100;
  const tens = (milli / 10) | 0;
  b[at++] = 0x30 + hundreds;
  b[at++] = 0x30 + tens;
  b[at++] = 0x30 + milli - tens * 10;
  b[at++] = 0x5a;
  o.length = at;
}

type Writer = (r: RequestRecord, out: LineBytes) => void;

/**
 * Statements storing the bytes of `text` (ASCII) at `b[at]`, `at` moved past them:
 * four at a time through the buffer's DataView (a quarter of the stores and bounds
 * checks of byte by byte), the rest byte by byte.
 */
const store = (text: string) => {
  const out: string[] = [];
  let i = 0;
  for (; i + 4 <= text.length; i += 4) {
    const w = text.charCodeAt(i) | (text.charCodeAt(i + 1) << 8) | (text.charCodeAt(i + 2) << 16) | (text.charCodeAt(i + 3) << 24);
    out.push(`v.setUint32(at, ${w >>> 0}, true); at += 4;`);
  }
  for (; i < text.length; i++) out.push(`b[at++] = ${text.charCodeAt(i)};`);
  return out.join(' ');
};

/** A run of REPEATING fields as last written: its values, and the bytes they made (from its first key to its end). */
interface Run {
  values: unknown[];
  bytes: Uint8Array;
}

/**
 * Keeps the bytes a run just wrote, at `from` up to the end, in the run's own buffer (made anew only when
 * the length differs): no typed array per record for a run that differs often. The caller stores the values.
 */
function keep(run: Run, o: LineBytes, from: number): void {
  const n = o.length - from;
  if (run.bytes.length !== n) run.bytes = new Uint8Array(n);
  const kept = run.bytes;
  const b = o.bytes;
  for (let i = 0; i < n; i++) kept[i] = b[from + i] as number;
}

/** Copies a run's kept bytes (the owed closing quote before them). */
function copy(run: Run, o: LineBytes, quote: boolean): void {
  const bytes = run.bytes;
  o.reserve(bytes.length + 1);
  let at = o.length;
  if (quote) o.bytes[at++] = 34;
  o.bytes.set(bytes, at);
  o.length = at + bytes.length;
}

/**
 * Keys and punctuation as constant byte stores, one helper call per value: `time`
 * (always there, RequestRecord.time is required) opens the object, every other
 * field present adds `,"key":value`. A string's closing quote is owed (`q`) and
 * stored with the next key, or at the end; a run of REPEATING fields closes its
 * own, so that its kept bytes are whole. Keys, punctuation and integers fit in the
 * SLACK every reserve leaves (checked here), so only values of unbounded length reserve.
 */
function compile(): Writer {
  const [first, ...rest] = Object.entries(FIELDS) as [keyof RequestRecord, Kind][];
  if (first?.[1] !== 'time') throw new Error('record-json: the first field must be the record time');
  let room = `{"${first[0]}":"`.length + ISO_ROOM + 1;
  let body = `return function appendRecordJson(r, o) {\nlet b, v, at, from;\n`;
  const fixed = (text: string) => `b = o.bytes; v = o.view; at = o.length; ${store(text)} o.length = at;`;
  body += `o.reserve(0);\n${fixed(`{"${first[0]}":"`)}\nt(o, r.${first[0]});\nlet q = true;\n`;
  const field = (key: string, kind: Kind) => {
    // The keys are the record's own identifiers (checked by the type above): safe to inline.
    const [open, write, owed] = kind === 'string' ? [`,"${key}":"`, 's', 'true'] : [`,"${key}":`, kind === 'ms' ? 'm' : 'n', 'false'];
    room += open.length + 1 + (kind === 'string' ? 0 : NUMBER_ROOM);
    return `if (r.${key} !== undefined) {\nb = o.bytes; v = o.view; at = o.length; if (q) b[at++] = 34; ${store(open)} o.length = at;\n${write}(o, r.${key});\nq = ${owed};\n}\n`;
  };
  const runs: Run[] = [];
  for (let i = 0; i < rest.length; ) {
    const [key, kind] = rest[i] as [keyof RequestRecord, Kind];
    if (!REPEATING.has(key)) {
      body += field(key, kind);
      i++;
      continue;
    }
    let end = i;
    while (end < rest.length && REPEATING.has((rest[end] as [keyof RequestRecord, Kind])[0])) end++;
    const keys = rest.slice(i, end).map(([k]) => k);
    // No record's value is this object: the first record of each run is written, then kept.
    runs.push({ values: keys.map(() => runs), bytes: new Uint8Array(0) });
    const run = `u[${runs.length - 1}]`;
    body += `if (${keys.map((k, j) => `r.${k} === ${run}.values[${j}]`).join(' && ')}) c(${run}, o, q);\nelse {\n`;
    body += `if (q) o.bytes[o.length++] = 34;\nq = false;\nfrom = o.length;\n`;
    for (const [k, kd] of rest.slice(i, end)) body += field(k, kd);
    body += `if (q) o.bytes[o.length++] = 34;\nk(${run}, o, from);\n${keys.map((k, j) => `${run}.values[${j}] = r.${k};`).join(' ')}\n}\nq = false;\n`;
    room += 1;
    i = end;
  }
  body += `b = o.bytes; at = o.length; if (q) b[at++] = 34; b[at++] = 125; o.length = at;\n};`;
  // A newline follows each record: it too must fit.
  if (room + 1 > SLACK) throw new Error(`record-json: a record's fixed bytes (${room}) exceed the buffer's slack`);
  return new Function('s', 'n', 'm', 't', 'u', 'c', 'k', body)(str, num, ms, time, runs, copy, keep) as Writer;
}

/** Appends the record as one line of JSON (no newline), `time` as an ISO 8601 string, in UTF-8. */
export const appendRecordJson: Writer = compile();

/** The record as one line of JSON: the text of appendRecordJson's bytes. */
export function recordJson(r: RequestRecord): string {
  const out = new LineBytes(1024);
  appendRecordJson(r, out);
  return out.bytes.toString('utf8', 0, out.length);
}
