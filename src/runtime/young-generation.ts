/**
 * The size of V8's young generation (where new objects live until a scavenge) for the
 * threads that serve requests. V8 lets it grow to 3 × 16–32 MB semi-spaces under
 * load: most of Velocity's resident-memory growth from idle to busy. A proxy's
 * per-request objects die young, so small semi-spaces cost no measurable CPU per
 * request (see docs/performance.md) and hold each thread's RSS down: 2 MB ones (a 6 MB
 * young generation, ~4 MB committed under load) took 4 MB off the GET bench's peak against
 * 4 MB ones, at the same CPU per request in GET, 1 MB gzip and 64 KB POST A/Bs.
 *
 * Worker threads get it as a resource limit. The main thread's young generation is
 * fixed when V8 starts (v8.setFlagsFromString has no effect on it then), so the CLI
 * replaces its process, same PID, with one started with --max-semi-space-size
 * (process.execve), unless a --max-semi-space-size is already given. The same restart
 * caps glibc's malloc arenas at two (MALLOC_ARENA_MAX, read only at process start, unless
 * set): V8's and libuv's helper threads otherwise each touch an arena of their own
 * (about 15 MB more RSS under load). Processes Velocity starts do not inherit that cap.
 * The restart also turns V8's parallel scavenge off (SCAVENGE_FLAG): a scavenge of a
 * 2 MB semi-space with few survivors is short on the main thread alone, while a
 * parallel one waits for helper threads that, on a box whose cores are busy with
 * traffic (clients, backends, other event loops), are not running — the longest
 * scavenge pauses, and so the proxy's p99, came from that wait (docs/performance.md).
 * And it turns V8's mid-tier compiler, Maglev, off (MAGLEV_FLAG): its background compile
 * jobs leave glibc's arenas fragmented (15–20 MB of freed but resident memory under load,
 * one thread), while hot functions still reach TurboFan, so CPU per request does not rise
 * (docs/performance.md has the A/B).
 * And it bounds the old generation between full GCs (OLD_SPACE_FLAGS): V8 lets it grow to
 * about 4 × what survived the last full GC when it has no measure of GC speed yet (the first
 * full GC under load came at ~50 MB with 16 MB live, 30 MB of RSS above the steady state,
 * for minutes), and what fills it is a proxy's dead, promoted request objects and
 * ArrayBuffers. A full GC of 16 MB costs a few ms every few seconds under load.
 * And it bounds the dead Buffers waiting for a scavenge (BUFFER_SCAVENGE_FLAG): a Buffer's
 * memory is outside the heap, freed only when a GC finds the Buffer dead, and a scavenge
 * comes when the young generation fills with objects — or, V8's backstop, when young
 * Buffers' memory reaches twice V8's default semi-space (64 MB in Node's builds), whatever
 * --max-semi-space-size says. Request bodies, upstream reads and zlib's output allocate far
 * more Buffer bytes than objects: a 64 KB POST bench had 20–35 MB of dead Buffers at a time
 * and a heap fragmented around them (peak 122–140 MB). The flag sets V8's "default" young
 * capacity to the one chosen here, so that backstop comes at 4 MB (docs/performance.md).
 * And it turns V8's memory reducer off (MEMORY_REDUCER_FLAG): when allocation slows after a busy
 * spell it runs full GCs that shrink the heaps and hand their pages back to the kernel, and the next
 * burst of traffic faults them all in again (2,000–4,000 page faults in the first moments of a 3 s
 * load after ~40 s idle, against under 130 without it) while V8 grows the heaps back, collecting more
 * often. A proxy's traffic comes in bursts; the heap it needed when busy is the one it keeps, as
 * nginx keeps its buffers (docs/performance.md).
 * This module imports nothing: bin/velocity.js calls it before loading the rest.
 */

/** One semi-space, MB; the young generation is three of them. */
export const SEMI_SPACE_MB = 2;
export const YOUNG_GENERATION_MB = 3 * SEMI_SPACE_MB;

const FLAG = '--max-semi-space-size';
export const SCAVENGE_FLAG = '--no-parallel-scavenge';
export const MAGLEV_FLAG = '--no-maglev';
export const MEMORY_REDUCER_FLAG = '--no-memory-reducer';
/** Old generation size, MB, at which the first full GC runs (OLD_SPACE_FLAGS). */
export const INITIAL_OLD_SPACE_MB = 16;
/** After each full GC the next one runs when the old generation is 1.5 × what survived (OLD_SPACE_FLAGS). */
export const HEAP_GROWING_PERCENT = 50;
export const OLD_SPACE_FLAGS = [`--initial-old-space-size=${INITIAL_OLD_SPACE_MB}`, `--heap-growing-percent=${HEAP_GROWING_PERCENT}`];
/**
 * V8's default new-space capacity, MB, from which it derives the young Buffer bytes that force a
 * scavenge (twice its default semi-space). Node is built without pointer compression, where V8
 * doubles this value: SEMI_SPACE_MB / 2 makes that default our semi-space, which stays as set.
 */
export const BUFFER_SCAVENGE_FLAG = `--scavenger-max-new-space-capacity-mb=${SEMI_SPACE_MB / 2}`;
/** Set in the restarted process's environment when the arena cap is Velocity's, not the operator's. */
const OWN_ARENA_CAP = 'VELOCITY_MALLOC_ARENA_MAX';

/**
 * Re-executes this process with the young-generation flag when it lacks one (never
 * returns then). A no-op where process.execve is missing (Windows) or a flag is set,
 * on the command line or in NODE_OPTIONS.
 */
export function limitYoungGeneration(): void {
  if (process.env[OWN_ARENA_CAP] !== undefined) {
    delete process.env[OWN_ARENA_CAP];
    delete process.env.MALLOC_ARENA_MAX;
  }
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => a.startsWith(FLAG) || a.startsWith('--max_semi_space_size'));
  if (!process.execve || given) return;
  const env = process.env.MALLOC_ARENA_MAX === undefined ? { ...process.env, MALLOC_ARENA_MAX: '2', [OWN_ARENA_CAP]: '1' } : process.env;
  process.execve(
    process.execPath,
    [
      process.execPath,
      `${FLAG}=${SEMI_SPACE_MB}`,
      SCAVENGE_FLAG,
      MAGLEV_FLAG,
      MEMORY_REDUCER_FLAG,
      ...OLD_SPACE_FLAGS,
      BUFFER_SCAVENGE_FLAG,
      ...process.execArgv,
      ...process.argv.slice(1),
    ],
    env,
  );
}
