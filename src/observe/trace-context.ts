/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): reading a client's
 * `traceparent`/`tracestate`, starting a trace when there is none, and the ids of
 * Velocity's own spans. Ids come from a pooled random buffer: one random fill per
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

export function newTraceId(): string {
  const id = randomHex(16);
  return id.charCodeAt(0) === 48 && id === ZERO_TRACE ? newTraceId() : id;
}

export function newSpanId(): string {
  const id = randomHex(8);
  return id.charCodeAt(0) === 48 && id === ZERO_SPAN ? newSpanId() : id;
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
