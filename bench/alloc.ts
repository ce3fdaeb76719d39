/**
 * Where the JavaScript garbage comes from: Velocity with features on under wrk, V8's sampling heap
 * profiler (through the inspector) counting every allocation, the ones scavenges and mark-compacts
 * collected included. Prints bytes allocated per request and the heaviest allocation sites (the
 * allocating function and its callers). A function inlined into its caller by TurboFan is counted
 * under the caller: `--no-inlining` shows the callees (and allocates a little more).
 *
 *   node bench/alloc.ts [--seconds 6] [--connections 50] [--top 40] [--depth 2] [--interval 256] [--no-inlining]
 *
 * The total agrees with `--trace-gc`'s scavenges (before − after, summed) within ~5 %.
 */
import { parseArgs } from 'node:util';
import { allocationSites, type HeapProfileNode } from './allocation-sites.ts';
import { ensureBuilt, freePort, profilingOptions, requireTools, runProfiling, runWrk, startNginxBackends, startVelocity, waitPort, withFeatures } from './lib.ts';

const { values: args } = parseArgs({
  options: {
    ...profilingOptions('40'),
    seconds: { type: 'string', default: '6' },
    depth: { type: 'string', default: '2' },
    /** Mean bytes between two samples (V8's default is 32 KiB; small sees small sites). */
    interval: { type: 'string', default: '256' },
    'no-inlining': { type: 'boolean', default: false },
  },
});

/** A Chrome DevTools Protocol session over the inspector's WebSocket. */
async function inspectorSession(port: number): Promise<{ call(method: string, params?: object): Promise<Record<string, unknown>>; close(): void }> {
  await waitPort(port);
  const [target] = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
  const ws = new WebSocket((target as { webSocketDebuggerUrl: string }).webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve, { once: true });
    ws.addEventListener('error', reject, { once: true });
  });
  const waiting = new Map<number, (result: Record<string, unknown>) => void>();
  ws.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: Record<string, unknown> };
    if (message.id !== undefined) waiting.get(message.id)?.(message.result ?? {});
  });
  let id = 0;
  return {
    call: (method, params = {}) =>
      new Promise((resolve) => {
        waiting.set(++id, resolve);
        ws.send(JSON.stringify({ id, method, params }));
      }),
    close: () => ws.close(),
  };
}

runProfiling('alloc', async (ctx) => {
  requireTools(['nginx', 'wrk']);
  ensureBuilt((l) => console.error(l));
  const { upstreams } = await startNginxBackends(ctx);
  const inspect = await freePort();
  const flags = [`--inspect=127.0.0.1:${inspect}`, ...(args['no-inlining'] ? ['--no-turbo-inlining'] : [])];
  const target = await startVelocity(ctx, 'velocity+features', upstreams, { nodeFlags: flags, ...withFeatures(ctx) });
  const url = `http://127.0.0.1:${target.port}/`;
  const wrk = ['-t1', `-c${args.connections}`];
  await runWrk(url, wrk, 3, target.pid);
  const session = await inspectorSession(inspect);
  await session.call('HeapProfiler.enable');
  await session.call('HeapProfiler.startSampling', { samplingInterval: Number(args.interval), includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true });
  const load = await runWrk(url, wrk, Number(args.seconds), target.pid);
  const { profile } = (await session.call('HeapProfiler.stopSampling')) as { profile: { head: HeapProfileNode } };
  session.close();
  const requests = load.requests;
  const { bytesPerRequest, sites } = allocationSites(profile.head, requests, Number(args.depth));
  console.log(`${target.name}: ${requests} requests sampled, ${Math.round(bytesPerRequest)} bytes allocated per request (slowed by the sampling: ${Math.round(load.rps)} req/s)`);
  for (const s of sites.slice(0, Number(args.top))) console.log(`${Math.round(s.bytesPerRequest).toString().padStart(7)}  ${s.site}`);
});
