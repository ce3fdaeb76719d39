/**
 * One access-log record as a JSON line, without the generic JSON.stringify: it
 * showed in perf on the data path (a spread copy of the record, then a walk of
 * its properties). The fields are declared once below — the type makes the table
 * name every field of RequestRecord — and compiled into one function of string
 * concatenations. The output is what `JSON.stringify({ ...record, time: ISO })`
 * gives: same keys in the same order, undefined fields left out, non-finite
 * numbers as null, strings escaped by JSON.stringify whenever they hold a byte
 * that needs it.
 */
import type { RequestRecord } from './events.ts';

type Kind = 'time' | 'string' | 'number';

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
  upstreamFirstByteMs: 'number',
  upstreamMs: 'number',
  totalMs: 'number',
  retries: 'number',
  queueWaitMs: 'number',
  decision: 'string',
  retryDenied: 'string',
  errorCode: 'string',
  userAgent: 'string',
  traceId: 'string',
  spanId: 'string',
  grpcMethod: 'string',
  grpcStatus: 'number',
};

/** What goes between a JSON string's quotes: `s` as it is unless it holds a quote, backslash, control character or surrogate. */
function jsonChars(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(s).slice(1, -1);
  }
  return s;
}

/**
 * Integers through String(), which answers small ones from V8's number-string
 * cache; other numbers (every record's durations, fresh doubles) through
 * JSON.stringify, which writes them without filling that cache and took half the
 * time of String() in perf. Same text either way: JSON writes a finite number as
 * its ToString, and NaN or ±Infinity as null.
 */
function jsonNumber(n: number): string {
  return (n | 0) === n ? String(n) : JSON.stringify(n);
}

let isoMs = Number.NaN;
let isoText = '';
/** ISO 8601 time of an epoch ms, kept while records share the millisecond. */
function isoTime(ms: number): string {
  if (ms !== isoMs) {
    isoMs = ms;
    isoText = new Date(ms).toISOString();
  }
  return isoText;
}

type Writer = (r: RequestRecord) => string;

/**
 * Keys and quotes as constants, one concatenation per field: `time` (always there,
 * RequestRecord.time is required) opens the object, every other field present adds
 * `,"key":value`. A string's closing quote is owed (`q`) and written with the next
 * key, or at the end: one concatenation less per string field.
 */
function compile(): Writer {
  const [first, ...rest] = Object.entries(FIELDS);
  if (first?.[1] !== 'time') throw new Error('record-json: the first field must be the record time');
  let body = `return function recordJson(r) {\nlet o = '{"${first[0]}":"' + t(r.${first[0]});\nlet q = true;\n`;
  for (const [key, kind] of rest) {
    // The keys are the record's own identifiers (checked by the type above): safe to inline.
    const [open, write, owed] = kind === 'string' ? [`"${key}":"`, 's', 'true'] : [`"${key}":`, 'n', 'false'];
    body += `if (r.${key} !== undefined) {\no += (q ? '",${open}' : ',${open}') + ${write}(r.${key});\nq = ${owed};\n}\n`;
  }
  body += `return o + (q ? '"}' : '}');\n};`;
  return new Function('s', 'n', 't', body)(jsonChars, jsonNumber, isoTime) as Writer;
}

/** The record as one line of JSON, `time` as an ISO 8601 string. */
export const recordJson: Writer = compile();
