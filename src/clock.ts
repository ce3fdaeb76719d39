/**
 * Epoch milliseconds (what Date.now() gives) told from performance.now() readings. Date.now() is a call
 * into V8's runtime and showed in perf on the request path (RequestContext, a response's end), where a
 * performance.now() reading — a fast API call, often already taken — serves as well. The offset between
 * the two clocks is read again once a second at most, so a step of the wall clock (NTP, an operator)
 * shows within a second.
 */
import { performance } from 'node:perf_hooks';

const ANCHOR_MS = 1_000;
/** Date.now() − performance.now(), as last read. */
let offset = 0;
/** The performance.now() time from which the offset is read again. */
let anchorDue = 0;

/** The epoch ms (an integer, as Date.now()) of `monotonic`, a performance.now() reading of the last second or so. */
export function epochMsAt(monotonic: number): number {
  if (monotonic >= anchorDue) {
    const now = performance.now();
    offset = Date.now() - now;
    anchorDue = now + ANCHOR_MS;
  }
  return Math.floor(monotonic + offset);
}

/** Date.now(), from performance.now(). */
export function epochMs(): number {
  return epochMsAt(performance.now());
}
