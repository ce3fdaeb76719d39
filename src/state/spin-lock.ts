/** The spin lock and bounded counter every multi-cell update in shared memory uses. */

/** What this thread writes into a spin lock it holds: its thread index + 1, so a dead thread's locks can be freed. */
let lockOwner = 1;

/** Called once at the start of a data-path thread. */
export function setLockOwner(thread: number): void {
  lockOwner = thread + 1;
}

/** Adds 1 to `array[index]` unless it already holds `max` or more; true when it added. */
export function incrementBelow(array: Int32Array, index: number, max: number): boolean {
  for (;;) {
    const current = Atomics.load(array, index);
    if (current >= max) return false;
    if (Atomics.compareExchange(array, index, current, current + 1) === current) return true;
  }
}

/** Runs `fn` holding a spin lock on `array[index]`. Critical sections here are a few loads and stores. */
export function withSpinLock<T>(array: Int32Array, index: number, fn: () => T): T {
  for (;;) {
    const holder = Atomics.compareExchange(array, index, 0, lockOwner);
    if (holder === 0) break;
    // Another thread holds it for a handful of instructions; yield the CPU briefly.
    Atomics.wait(array, index, holder, 1);
  }
  try {
    return fn();
  } finally {
    Atomics.store(array, index, 0);
    Atomics.notify(array, index, 1);
  }
}
