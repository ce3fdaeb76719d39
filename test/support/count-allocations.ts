/**
 * Preloaded into a Velocity process (`node --import`, through NODE_OPTIONS) by the allocation tests:
 * counts what the process makes, so a test can tell what Velocity makes per request and per body chunk.
 *
 * - Async resources by type (PROMISE, Timeout, TickObject, Immediate, WRITEWRAP, …), from an async_hooks
 *   init hook. A Timeout is made by setTimeout and setInterval, global or imported from node:timers or
 *   node:timers/promises, and by socket.setTimeout: counting the type catches every way of making a timer,
 *   which wrapping the globals would not.
 * - `new AbortController()`, by a subclass put in place of the global (it makes no async resource).
 *
 * Each is counted twice: in `all`, and in `fromConnections` when it was born of a connection Velocity
 * accepted — its async_hooks trigger chain leads to a listening socket (TCPSERVERWRAP). A request's
 * work runs in its connection's callbacks (and the upstream connection it opens there, and the promises
 * and timers made there): it is counted. The process's own periodic work — health checks, the config
 * watch, the admin API's timers — started from the main module, not from a connection: it is not, so
 * it does not blur a count taken while requests run. For PROMISE, Timeout and AbortController born of
 * a connection, `sites` keeps the frame that made them (the first in Velocity's source), so a failure
 * says where.
 *
 * On SIGUSR2 (unused by Velocity) it writes the counts as JSON to the file VELOCITY_ALLOCATION_COUNTS
 * names (a temporary file renamed into place, so a reader never sees half of it).
 */
import { createHook, executionAsyncId } from 'node:async_hooks';
import { renameSync, writeFileSync } from 'node:fs';

export interface AllocationCounts {
  all: Record<string, number>;
  fromConnections: Record<string, number>;
  /** Type → making frame → count, for the types below, born of a connection. */
  sites: Record<string, Record<string, number>>;
}

const SITE_TYPES = new Set(['PROMISE', 'Timeout', 'AbortController', 'TickObject']);
const counts: AllocationCounts = { all: {}, fromConnections: {}, sites: {} };
/** Async ids of listening sockets and of the resources born of their connections. */
const fromConnection = new Set<number>();

/** The first frame in Velocity's source (else the first one at all) of the code making the resource. */
function site(): string {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 40;
  const frames = (new Error().stack ?? '').split('\n').slice(1);
  Error.stackTraceLimit = limit;
  const own = frames.filter((f) => !f.includes('count-allocations'));
  const frame = own.find((f) => /\/src\/|\/dist\//.test(f)) ?? own[0] ?? '(unknown)';
  // "at f (file:///…/src/a/b.ts:1:2)" → "f src/a/b.ts:1:2"
  return frame
    .trim()
    .replace(/^at /, '')
    .replace(/\(?file:\/\/\S*\/(src|dist)\/([^)]*)\)?$/, '$1/$2');
}

function count(type: string, born: boolean): void {
  counts.all[type] = (counts.all[type] ?? 0) + 1;
  if (!born) return;
  counts.fromConnections[type] = (counts.fromConnections[type] ?? 0) + 1;
  if (SITE_TYPES.has(type)) {
    const sites = (counts.sites[type] ??= {});
    const at = site();
    sites[at] = (sites[at] ?? 0) + 1;
  }
}

createHook({
  init(id, type, triggerId) {
    const born = fromConnection.has(triggerId);
    if (type === 'TCPSERVERWRAP' || born) fromConnection.add(id);
    count(type, born);
  },
}).enable();

const Original = globalThis.AbortController;
globalThis.AbortController = class CountedAbortController extends Original {
  constructor() {
    super();
    count('AbortController', fromConnection.has(executionAsyncId()));
  }
};

const out = process.env.VELOCITY_ALLOCATION_COUNTS;
if (out) {
  process.on('SIGUSR2', () => {
    writeFileSync(`${out}.tmp`, JSON.stringify(counts));
    renameSync(`${out}.tmp`, out);
  });
}
