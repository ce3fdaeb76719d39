/**
 * What a few kept strings hold on the heap, and what live Buffers hold in this process. An id sliced from a pooled string keeps that whole string
 * alive; the id makers size their strings so that one outlives no more than a few hundred requests
 * (a string that outlives two scavenges is promoted to the old generation).
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Heap bytes held after a full GC by `kept` results of `make`, one of every `every` calls. */
export function heapHeldByKept(make: () => string, every: number, kept: number): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  const before = getHeapStatistics().used_heap_size;
  const keep: string[] = [];
  for (let i = 0; i < every * kept; i++) {
    const made = make();
    if (i % every === 0) keep.push(made);
  }
  gc();
  const held = getHeapStatistics().used_heap_size - before;
  if (keep.length !== kept) throw new Error(`kept ${keep.length} of ${kept}`);
  return held;
}

/** Live Buffer/ArrayBuffer bytes of this process after full GCs (V8 frees array buffers' memory behind a GC, so twice, a turn apart). */
export async function liveBuffers(): Promise<number> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
  return process.memoryUsage().arrayBuffers;
}
