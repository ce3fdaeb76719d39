/**
 * Where Velocity's time goes on the hot path: the real binary under wrk load with
 * `--cpu-prof`, then the heaviest functions by self time and the heaviest files.
 *
 *   node bench/profile.ts [--seconds 10] [--connections 50] [--features] [--top 30]
 *
 * The .cpuprofile is kept under bench/results/ (open it in Chrome DevTools or
 * speedscope for the flame graph).
 */
import { mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BenchContext, ensureBuilt, profilingOptions, ROOT, requireTools, resultsFile, runWrk, startNginxBackends, startVelocity, withFeatures } from './lib.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time per function and per file, in ms, from a V8 CPU profile. */
export function summarizeProfile(profile: CpuProfile): { functions: [string, number][]; files: [string, number][]; totalMs: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  const functions = new Map<string, number>();
  const files = new Map<string, number>();
  let totalMs = 0;
  for (const [id, ms] of self) {
    const frame = (byId.get(id) as ProfileNode).callFrame;
    const file = frame.url.replace(/^file:\/\//, '').replace(ROOT, '') || `(${frame.functionName || 'native'})`;
    const name = `${frame.functionName || '(anonymous)'} ${file}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
    functions.set(name, (functions.get(name) ?? 0) + ms);
    const group = file.includes('node_modules/') ? file.replace(/^.*node_modules\/([^/]+).*$/, 'node_modules/$1') : file.startsWith('node:') ? file : file;
    files.set(group, (files.get(group) ?? 0) + ms);
    totalMs += ms;
  }
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return { functions: sorted(functions), files: sorted(files), totalMs };
}

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      ...profilingOptions('30'),
      features: { type: 'boolean', default: false },
    },
  });
  requireTools(['nginx', 'wrk']);
  ensureBuilt((l) => console.error(l));
  const ctx = new BenchContext();
  try {
    const { upstreams } = await startNginxBackends(ctx);
    const profDir = join(ctx.dir, 'prof');
    mkdirSync(profDir);
    const velocity = await startVelocity(ctx, 'velocity', upstreams, {
      cpuProfDir: profDir,
      ...(args.features ? withFeatures(ctx) : {}),
    });
    const url = `http://127.0.0.1:${velocity.port}/`;
    await runWrk(url, ['-t1', '-c10'], 2, velocity.pid);
    const result = await runWrk(url, ['-t1', `-c${args.connections}`], Number(args.seconds), velocity.pid);
    console.log(`load: ${Math.round(result.rps)} req/s, p50 ${result.p50} ms, p99 ${result.p99} ms, errors ${result.errors}, RSS ${Math.round(result.rssMb)} MB`);
    await velocity.stop();
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error('no .cpuprofile was written');
    const kept = resultsFile('profile').replace(/\.json$/, '.cpuprofile');
    renameSync(join(profDir, file), kept);
    const { functions, files, totalMs } = summarizeProfile(JSON.parse(readFileSync(kept, 'utf8')) as CpuProfile);
    const top = Number(args.top);
    const pct = (ms: number) => `${((100 * ms) / totalMs).toFixed(1).padStart(5)} %`;
    console.log(`\nself time by function (top ${top} of ${Math.round(totalMs)} ms sampled):`);
    for (const [name, ms] of functions.slice(0, top)) console.log(`  ${pct(ms)}  ${name}`);
    console.log('\nself time by file:');
    for (const [name, ms] of files.slice(0, 25)) console.log(`  ${pct(ms)}  ${name}`);
    console.log(`\nprofile: ${kept}`);
  } finally {
    ctx.cleanup();
  }
}

if (import.meta.main) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(`profile failed: ${(err as Error).message}`);
      process.exit(1);
    },
  );
}
