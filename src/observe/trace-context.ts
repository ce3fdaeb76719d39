/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): reading a client's
 * `traceparent`/`tracestate`, starting a trace when there is none (newTraceRecord), and the ids of
 * Velocity's own spans. Ids come from pooled random buffers: one random fill per
 * five hundred requests, not one per id (a fill's fixed cost, a crypto job of a few
 * µs, is what a smaller pool paid per request: 4 KiB took 115 ns for a request's
 * three ids, 16 KiB 90 ns).
 */
import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 16 * 1024;
/**
 * Pool bytes made into one hex string: an id is a slice of it, not a call into C++ per id. A slice keeps
 * its whole string alive, and a string that outlives two scavenges (one every ~600 requests) is promoted
 * to the old generation, whose mark-compacts pause the loop for ms: the whole pool as one 32 KiB string
 * served ~680 requests and often was. A quarter of it serves ~170.
 */
const RUN_BYTES = 4 * 1024;
const pool = Buffer.alloc(POOL_BYTES);
/** Pool bytes made into strings since the last fill. */
let made = POOL_BYTES;
let hexRun = '';
let hexAt = 0;

function randomHex(bytes: number): string {
  const chars = 2 * bytes;
  if (hexAt + chars > hexRun.length) {
    if (made === POOL_BYTES) {
      randomFillSync(pool);
      made = 0;
    }
    hexRun = pool.toString('hex', made, made + RUN_BYTES);
    made += RUN_BYTES;
    hexAt = 0;
  }
  const hex = hexRun.slice(hexAt, hexAt + chars);
  hexAt += chars;
  return hex;
}

const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/*
 * An id is a slice of the pool: comparing it with a string is a call into the runtime (V8 compares sliced
 * strings out of line), so the all-zero id is looked for only when the id starts with a zero.
 */

export function newSpanId(): string {
  const id = randomHex(8);
  return id.charCodeAt(0) === 48 && id === ZERO_SPAN ? newSpanId() : id;
}

/*
 * A new trace — the usual request, whose client sent no traceparent — gets its ids and its first attempt's
 * traceparent as slices of one pre-formatted record, `00-<trace id>-<attempt span id>-01<request span id>`.
 * Built per attempt with `+`, the traceparent was four cons strings (32 bytes each) that the head's write
 * then flattened into one more string: ~200 bytes of garbage a request. A slice is 32 bytes and needs no
 * flattening.
 */
/** Where each part starts in a record; the record up to NEW_TRACE_REQUEST_SPAN is the traceparent naming the attempt span, sampled. */
export const NEW_TRACE_TRACE_ID = 3;
export const NEW_TRACE_ATTEMPT_SPAN = 36;
export const NEW_TRACE_REQUEST_SPAN = 55;
const RECORD = 71;
/** Random bytes of a record: the trace id's 16, then the two span ids' 8 each. */
const RECORD_RANDOM = 32;
/** Records per string: a slice keeps its string alive (see RUN_BYTES), and 128 records are 9 KiB. */
const RECORDS_PER_RUN = 128;
/** Random bytes per fill: four runs' (a fill's fixed cost, a few µs, is paid per 512 new traces). */
const recordRandom = Buffer.alloc(4 * RECORDS_PER_RUN * RECORD_RANDOM);
let randomUsed = recordRandom.length;
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/** A run's records as bytes: the fixed characters written once, the hex digits per run. */
const recordText = Buffer.from(`00-${'0'.repeat(32)}-${'0'.repeat(16)}-01${'0'.repeat(16)}`.repeat(RECORDS_PER_RUN), 'latin1');
let records = '';
let recordAt = RECORD * RECORDS_PER_RUN;

/** Whether bytes[from, to) are all zero (an id the spec does not allow). */
function allZero(bytes: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Writes bytes[from, from + n) as lower-case hex into recordText at `at`. */
function putHex(bytes: Buffer, from: number, n: number, at: number): void {
  for (let i = 0; i < n; i++) {
    const byte = bytes[from + i] as number;
    recordText[at + 2 * i] = HEX_DIGITS[byte >> 4] as number;
    recordText[at + 2 * i + 1] = HEX_DIGITS[byte & 15] as number;
  }
}

/** Writes a run of new records into recordText from the next random bytes; a record with an all-zero id gets new ones. */
function formatRecords(): void {
  if (randomUsed === recordRandom.length) {
    randomFillSync(recordRandom);
    randomUsed = 0;
  }
  for (let r = 0; r < RECORDS_PER_RUN; r++) {
    const from = randomUsed + r * RECORD_RANDOM;
    while (allZero(recordRandom, from, from + 16) || allZero(recordRandom, from + 16, from + 24) || allZero(recordRandom, from + 24, from + 32)) {
      randomFillSync(recordRandom, from, RECORD_RANDOM);
    }
    const to = r * RECORD;
    putHex(recordRandom, from, 16, to + NEW_TRACE_TRACE_ID);
    putHex(recordRandom, from + 16, 8, to + NEW_TRACE_ATTEMPT_SPAN);
    putHex(recordRandom, from + 24, 8, to + NEW_TRACE_REQUEST_SPAN);
  }
}

/**
 * A new trace's record: `00-<trace id>-<attempt span id>-01<request span id>`, the parts at the
 * NEW_TRACE_* offsets (a trace id of 32 hex digits, span ids of 16, none all zero).
 */
export function newTraceRecord(): string {
  if (recordAt === RECORD * RECORDS_PER_RUN) {
    formatRecords();
    randomUsed += RECORDS_PER_RUN * RECORD_RANDOM;
    records = recordText.toString('latin1');
    recordAt = 0;
  }
  const record = records.slice(recordAt, recordAt + RECORD);
  recordAt += RECORD;
  return record;
}

export interface ParentContext {
  traceId: string;
  spanId: string;
  sampled: boolean;
}

const HEX = /^[0-9a-f]+$/;

/**
 * A valid `traceparent`, or undefined (the spec says: start a new trace then).
 * Version 00 has exactly four fields; a higher version may append more, which are ignored.
 */
export function parseTraceparent(value: string | string[] | undefined): ParentContext | undefined {
  if (typeof value !== 'string' || value.length < 55) return undefined;
  const v = value.trim();
  if (v.charCodeAt(2) !== 45 || v.charCodeAt(35) !== 45 || v.charCodeAt(52) !== 45) return undefined;
  const version = v.slice(0, 2);
  const traceId = v.slice(3, 35);
  const spanId = v.slice(36, 52);
  const flags = v.slice(53, 55);
  if (!HEX.test(version) || version === 'ff' || !HEX.test(traceId) || !HEX.test(spanId) || !HEX.test(flags)) return undefined;
  if (version === '00' ? v.length !== 55 : v.length > 55 && v.charCodeAt(55) !== 45) return undefined;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

/** A `tracestate` passed on unchanged when it is well-formed enough (at most 32 members, 512 chars). */
export function cleanTracestate(value: string | string[] | undefined): string | undefined {
  const v = Array.isArray(value) ? value.join(',') : value;
  if (!v || v.length > 512) return undefined;
  if (v.split(',').length > 32) return undefined;
  return v;
}

export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`;
}
