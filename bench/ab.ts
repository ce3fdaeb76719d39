/**
 * Two builds of Velocity side by side with nginx, features on (metrics, JSON access log to a
 * file, health checks), GET c=50: the A/B of one change on a shared machine. Rounds alternate
 * nginx, A, B (B before A every other round); medians of CPU µs per request (user/system) and req/s, and each against nginx
 * in the same round.
 *
 *   node bench/ab.ts --base DIR [--other DIR] [--seconds 5] [--rounds 5] [--connections 50] [--path /] [--post BYTES] [--gzip | --header-rules] [--gap 0]
 *
 * `--gap SECONDS` idles that long before each run, as `npm run bench` leaves each contender idle while the
 * others run (the memory a process hands back while idle is faulted in again under load).
 * `--post BYTES` POSTs a body of that size to /post per request (bench/run.ts's `POST 64KB` is `--post 65536 --connections 20`).
 * `--gzip` adds the compress middleware (gzip, every size: / is 21 bytes) and `Accept-Encoding: gzip` to each
 * request (bench/run.ts's `GET 1MB gzip` is `--gzip --path /big --connections 10`). `--header-rules` gives the
 * route bench/run.ts's three header rules (its `velocity+3 header rules`).
 *
 * DIR is a checkout (or a copy of one with `dist/` and a `node_modules` link) built before the change;
 * `--other` runs another such copy as B instead of this checkout.
 */

import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import {
  BenchContext,
  type Contender,
  ensureBuilt,
  HEADER_RULES_SERVICE,
  type LoadResult,
  median,
  requireTools,
  runWrk,
  startNginxBackends,
  startNginxProxy,
  startVelocity,
  WARMUP_SECONDS,
} from './lib.ts';

const { values: args } = parseArgs({
  options: {
    base: { type: 'string' },
    other: { type: 'string' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    gap: { type: 'string', default: '0' },
    path: { type: 'string', default: '/' },
    post: { type: 'string' },
    gzip: { type: 'boolean', default: false },
    'header-rules': { type: 'boolean', default: false },
  },
});
if (!args.base) throw new Error('--base DIR is required (a checkout built before the change)');
const say = (line: string) => process.stderr.write(`${line}\n`);
requireTools(['nginx', 'wrk']);
ensureBuilt(say);
const ctx = new BenchContext();
try {
  const { upstreams } = await startNginxBackends(ctx);
  const features = (name: string, root?: string) =>
    startVelocity(ctx, name, upstreams, {
      root,
      startMs: 180_000,
      extra: `metrics: { enabled: true }\naccess_log: { output: ${join(ctx.dir, `${name}-access.log`)}, format: json }`,
      service: `    health: { type: http, path: /, interval: 1s, timeout: 1s }\n${args.gzip ? '    middleware: [{ compress: { encodings: [gzip], types: [application/octet-stream, text/*], min_size: 0 } }]\n' : args['header-rules'] ? HEADER_RULES_SERVICE : ''}`,
    });
  const contenders: Contender[] = await Promise.all([startNginxProxy(ctx, upstreams), features('A (base)', args.base), features('B (this tree)', args.other)]);
  const wrk = ['-t1', `-c${args.connections}`, ...(args.post ? ['-s', ctx.postScript(Number(args.post))] : []), ...(args.gzip ? ['-H', 'Accept-Encoding: gzip'] : [])];
  if (args.post) args.path = '/post';
  const runs = new Map<string, LoadResult[]>(contenders.map((c) => [c.name, []]));
  for (const c of contenders) await runWrk(`http://127.0.0.1:${c.port}${args.path}`, wrk, WARMUP_SECONDS, c.pid);
  for (let round = 0; round < Number(args.rounds); round++) {
    // A before B in even rounds, after it in odd ones: no build gains from always running second.
    const [nginx, a, b] = contenders as [Contender, Contender, Contender];
    for (const c of round % 2 === 0 ? [nginx, a, b] : [nginx, b, a]) {
      await delay(Number(args.gap) * 1000);
      const result = await runWrk(`http://127.0.0.1:${c.port}${args.path}`, wrk, Number(args.seconds), c.pid);
      runs.get(c.name)?.push(result);
      say(
        `round ${round + 1} ${c.name}: ${Math.round(result.rps)} req/s, ${result.cpuUsPerRequest.toFixed(1)} µs/req, p99 ${result.p99.toFixed(2)} ms, ${Math.round(result.rssMb)} MB, ${result.pageFaults} page faults`,
      );
    }
  }
  const nginx = runs.get('nginx') ?? [];
  console.log('| contender | req/s | CPU µs/req | user | sys | switches/req | CPU × nginx | req/s × nginx | p99 ms | p99 × nginx | peak RSS MB | page faults |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const [name, list] of runs) {
    const m = (f: (r: LoadResult) => number) => median(list.map(f));
    const perRound = (f: (r: LoadResult, n: LoadResult) => number) => median(list.map((r, i) => f(r, nginx[i] as LoadResult)));
    console.log(
      `| ${name} | ${Math.round(m((r) => r.rps))} | ${m((r) => r.cpuUsPerRequest).toFixed(1)} | ${m((r) => r.userUsPerRequest).toFixed(1)} | ${m((r) => r.systemUsPerRequest).toFixed(1)} | ${m((r) => r.switchesPerRequest).toFixed(2)} | ${perRound((r, n) => r.cpuUsPerRequest / n.cpuUsPerRequest).toFixed(2)} | ${perRound((r, n) => r.rps / n.rps).toFixed(2)} | ${m((r) => r.p99).toFixed(2)} | ${perRound((r, n) => r.p99 / n.p99).toFixed(2)} | ${Math.round(Math.max(...list.map((r) => r.rssMb)))} | ${Math.round(m((r) => r.pageFaults))} |`,
    );
  }
  // Each round's B against the A run just before it: the least noisy figure on a shared machine.
  const a = runs.get('A (base)') ?? [];
  const b = runs.get('B (this tree)') ?? [];
  const ratios = b.map((r, i) => r.cpuUsPerRequest / (a[i] as LoadResult).cpuUsPerRequest);
  console.log(`\nCPU per request, B ÷ A per round: median ${median(ratios).toFixed(3)} (${ratios.map((x) => x.toFixed(2)).join(' ')})`);
  const tails = b.map((r, i) => r.p99 / (a[i] as LoadResult).p99);
  console.log(`p99, B ÷ A per round: median ${median(tails).toFixed(3)} (${tails.map((x) => x.toFixed(2)).join(' ')})`);
} finally {
  ctx.cleanup();
}
