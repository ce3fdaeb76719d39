/**
 * Where the CPU goes, measured with `perf` (not `--cpu-prof`, which samples
 * wall-clock time and shows a thread descheduled inside write() as JavaScript
 * work): Velocity with features on (health checks, metrics, JSON access log to a
 * file) under wrk, sampled with `perf record -g`, JavaScript frames named through
 * --perf-basic-prof. Prints the split between the kernel, Node/V8 and JavaScript,
 * and the heaviest symbols, then the kernel time per request by what the process was doing
 * (bench/kernel-time.ts) and its involuntary context switches per request. `--nginx` profiles
 * nginx the same way, for comparison; `--floor plain` and `--floor direct` the raw-socket floor
 * (bench/raw-floor.ts, GET only) on net's socket I/O or on Velocity's. For Velocity and the floors the
 * user-space samples outside libc (JavaScript, and the V8 builtins, barriers, GC and Node C++ it calls)
 * are also summed by the source file of the nearest JavaScript frame in their stack (dist/… for
 * Velocity's own code).
 *
 *   node bench/perf.ts [--seconds 10] [--connections 50] [--nginx | --floor plain|direct | --header-rules] [--top 40] [--post BYTES]
 *
 * Needs perf (Debian linux-perf) and root or perf_event_paranoid ≤ 1.
 */
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { kernelTimeByCategory } from './kernel-time.ts';
import {
  ensureBuilt,
  HEADER_RULES_SERVICE,
  perfScript,
  profilingOptions,
  requireTools,
  runProfiling,
  runWrk,
  startDirectFloor,
  startNginxBackends,
  startNginxProxy,
  startRawFloor,
  startVelocity,
  withFeatures,
} from './lib.ts';

const { values: args } = parseArgs({
  options: {
    ...profilingOptions('40'),
    nginx: { type: 'boolean', default: false },
    floor: { type: 'string' },
    /** Velocity with a route's three header rules (bench/run.ts's `velocity+3 header rules`) instead of features on. */
    'header-rules': { type: 'boolean', default: false },
    /** POST a body of this size to /post per request instead of GET /. */
    post: { type: 'string' },
  },
});

/** Groups perf's per-symbol shares into kernel, JavaScript (perf map), Node/V8 and libraries. */
function groupOf(dso: string): string {
  if (dso.includes('kernel')) return 'kernel';
  if (dso.startsWith('[JIT]') || (dso.startsWith('perf-') && dso.endsWith('.map'))) return 'JavaScript (JIT)';
  if (dso === 'node') return 'node + V8 (C++)';
  return dso;
}

/** The source file a JavaScript frame from --perf-basic-prof names (`JS:*fn file:///…/dist/x.js:1:2`), shortened; node:… for Node's own. */
function sourceOf(sym: string): string {
  const m = /\s((?:file:\/\/|node:)\S+?)(?::\d+){0,2}$/.exec(sym);
  if (!m) return '(JavaScript of no file: generated code)';
  return (m[1] as string).replace(/^file:\/\/.*?\/(dist|bench|node_modules)\//, '$1/');
}

/**
 * Shares (% of all samples) of the user-space samples outside libc by the source file of the nearest
 * JavaScript frame, from `perf script -F ip,sym,dso` (stacks leaf first, a blank line between samples).
 */
function byNearestJavaScript(script: string): Map<string, number> {
  const counts = new Map<string, number>();
  let samples = 0;
  for (const stack of script.split('\n\n')) {
    const frames = stack.trim().split('\n');
    const leaf = frames[0]?.trim();
    if (!leaf) continue;
    samples++;
    if (leaf.includes('[kernel') || leaf.includes('libc.so')) continue;
    const js = frames.find((f) => f.includes(' JS:'));
    const where = js ? sourceOf(js.trim().replace(/ \([^)]*\)$/, '')) : '(no JavaScript frame: the event loop, GC threads, V8 entry)';
    counts.set(where, (counts.get(where) ?? 0) + 1);
  }
  return new Map([...counts].map(([where, n]) => [where, (n / samples) * 100]));
}

const floorStarters: Record<string, typeof startRawFloor> = { plain: startRawFloor, direct: startDirectFloor };

runProfiling('perf', async (ctx) => {
  requireTools(['nginx', 'wrk', 'perf']);
  ensureBuilt((l) => console.error(l));
  const { upstreams } = await startNginxBackends(ctx);
  const startFloor = args.floor === undefined ? undefined : floorStarters[args.floor];
  if (args.floor !== undefined && startFloor === undefined) throw new Error(`--floor ${args.floor}: plain or direct`);
  const target = args.nginx
    ? await startNginxProxy(ctx, upstreams)
    : startFloor
      ? await startFloor(ctx, upstreams, ['--perf-basic-prof'])
      : args['header-rules']
        ? await startVelocity(ctx, 'velocity+3 header rules', upstreams, { nodeFlags: ['--perf-basic-prof'], service: HEADER_RULES_SERVICE })
        : await startVelocity(ctx, 'velocity+features', upstreams, { nodeFlags: ['--perf-basic-prof'], ...withFeatures(ctx) });
  const url = `http://127.0.0.1:${target.port}${args.post ? '/post' : '/'}`;
  const seconds = Number(args.seconds);
  const wrk = ['-t1', `-c${args.connections}`, ...(args.post ? ['-s', ctx.postScript(Number(args.post))] : [])];
  await runWrk(url, wrk, 3, target.pid);
  const data = process.env.PERF_DATA ?? join(ctx.dir, 'perf.data');
  const perf = spawn('perf', ['record', '-F', '999', '-g', '-o', data, '-p', String(target.pid), '--', 'sleep', String(seconds)], { stdio: 'ignore' });
  const load = await runWrk(url, wrk, seconds, target.pid);
  await new Promise((resolve) => perf.once('exit', resolve));
  console.log(
    `${target.name}: ${Math.round(load.rps)} req/s, CPU ${load.cpuUsPerRequest.toFixed(1)} µs/request (user ${load.userUsPerRequest.toFixed(1)}, system ${load.systemUsPerRequest.toFixed(1)})`,
  );
  const report = execFileSync('perf', ['report', '-i', data, '--no-children', '--stdio', '--sort', 'dso,sym', '-g', 'none', '--percent-limit', '0.01'], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const rows: { pct: number; dso: string; sym: string }[] = [];
  for (const line of report.split('\n')) {
    const m = /^\s+([\d.]+)%\s+(\[JIT\] tid \d+|\S+)\s+\[[.kxj]\]\s+(.*)$/.exec(line);
    if (m) rows.push({ pct: Number(m[1]), dso: m[2] as string, sym: (m[3] as string).trim() });
  }
  const groups = new Map<string, number>();
  for (const r of rows) groups.set(groupOf(r.dso), (groups.get(groupOf(r.dso)) ?? 0) + r.pct);
  console.log('\nshare of samples by where the code lives:');
  for (const [g, pct] of [...groups].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(`  ${pct.toFixed(1).padStart(5)} %  ${g}`);
  if (!args.nginx) {
    const files = byNearestJavaScript(perfScript(data, ['-F', 'ip,sym,dso']));
    console.log("\nuser-space samples outside libc by the nearest JavaScript frame's file (µs per request at this share):");
    for (const [file, pct] of [...files].sort((a, b) => b[1] - a[1]).slice(0, Number(args.top))) {
      console.log(`  ${pct.toFixed(2).padStart(6)} %  ${((pct / 100) * load.cpuUsPerRequest).toFixed(2).padStart(5)} µs  ${file}`);
    }
  }
  console.log(`\nheaviest symbols (top ${args.top}):`);
  for (const r of rows.slice(0, Number(args.top))) console.log(`  ${r.pct.toFixed(2).padStart(6)} %  ${groupOf(r.dso).padEnd(16)}  ${r.sym.slice(0, 110)}`);
  const script = perfScript(data, ['-F', 'tid,ip,sym']);
  console.log(`\nkernel time per request by what the process was doing (${load.switchesPerRequest.toFixed(2)} involuntary context switches per request):`);
  for (const c of kernelTimeByCategory(script, load.cpuUsPerRequest)) console.log(`  ${c.us.toFixed(1).padStart(5)} µs  ${c.name}`);
});
