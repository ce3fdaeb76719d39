/**
 * bench/alloc.ts's table: a V8 sampling heap profile (HeapProfiler.stopSampling's `profile`,
 * taken with the objects minor and major GCs collected included, so it counts garbage too)
 * summed into bytes per request by allocation site — the allocating function and `depth - 1`
 * of its callers.
 */

/** The parts of a `HeapProfiler.SamplingHeapProfileNode` read here. */
export interface HeapProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  /** Bytes allocated by this frame itself (V8 scales the samples up to an estimate of all allocations). */
  selfSize: number;
  children: HeapProfileNode[];
}

export interface AllocationSite {
  /** `function file:line:column`, callers after ` < `. */
  site: string;
  bytesPerRequest: number;
}

/** A frame as `name file:line:column`, the file relative to dist/ or node_modules/ when under one. */
function frameName(node: HeapProfileNode): string {
  const f = node.callFrame;
  return `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(dist|node_modules)\//, '')}:${f.lineNumber + 1}:${f.columnNumber + 1}`;
}

/** Total bytes per request and the sites, heaviest first. */
export function allocationSites(head: HeapProfileNode, requests: number, depth: number): { bytesPerRequest: number; sites: AllocationSite[] } {
  const bySite = new Map<string, number>();
  let total = 0;
  const walk = (node: HeapProfileNode, callers: string[]): void => {
    const stack = [frameName(node), ...callers];
    if (node.selfSize > 0) {
      total += node.selfSize;
      const site = stack.slice(0, depth).join(' < ');
      bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child, stack);
  };
  for (const child of head.children) walk(child, []);
  const sites = [...bySite].map(([site, bytes]) => ({ site, bytesPerRequest: bytes / requests })).sort((a, b) => b.bytesPerRequest - a.bytesPerRequest);
  return { bytesPerRequest: total / requests, sites };
}
