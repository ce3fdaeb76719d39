/**
 * `npm run bench`: Velocity side by side with nginx (1 worker), HAProxy (1 thread),
 * @fastify/http-proxy and node-http-proxy on the same three nginx backends. Every
 * contender that has an access log writes one to a file (nginx, HAProxy, Fastify,
 * velocity+features); CPU per request is reported with its user/system split. Runs alternate — A B C D
 * A B C D … — with wrk, each bounded in time, and the table gives medians of
 * req/s, p50, p99, errors, peak RSS, and each contender's req/s against nginx's
 * in the same round. Writes everything to bench/results/bench-<time>.json.
 *
 *   node bench/run.ts [--quick] [--seconds N] [--rounds N] [--only SCENARIO-SUBSTRING]
 *
 * `--quick` is the smoke run of the test suite: 1 s per run, one round.
 */

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { formatGrpcTable, grpcScenario } from './grpc.ts';
import {
  BenchContext,
  type Contender,
  ensureBuilt,
  HEADER_RULES_SERVICE,
  has,
  median,
  type Row,
  type Run,
  requireTools,
  resultsFile,
  runWrk,
  sameRoundRatios,
  startDirectFloor,
  startFastifyProxy,
  startHaproxy,
  startNginxBackends,
  startNginxProxy,
  startNodeHello,
  startNodeHttpProxy,
  startRawFloor,
  startUndiciFloor,
  startVelocity,
  WARMUP_SECONDS,
  withFeatures,
} from './lib.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    seconds: { type: 'string' },
    rounds: { type: 'string' },
    only: { type: 'string' },
  },
});
const quick = args.quick === true;
/** How long the smoke run tries again a run that got no answer in its one second. */
const QUICK_RETRY_SECONDS = 5;
const seconds = Number(args.seconds ?? (quick ? 1 : 5));
const rounds = Number(args.rounds ?? (quick ? 1 : 3));
const autoThreads = availableParallelism();

interface Scenario {
  name: string;
  path: string;
  wrk: string[];
  /** Contenders in this scenario, in run order. */
  contenders: string[];
}

const say = (line: string) => process.stderr.write(`${line}\n`);

function versions(): Record<string, string> {
  const first = (cmd: string, argv: string[]) => {
    try {
      return execFileSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0] ?? '';
    } catch (err) {
      return String((err as { stderr?: string }).stderr ?? '').split('\n')[0] ?? '';
    }
  };
  return { node: process.version, nginx: first('nginx', ['-v']), haproxy: first('haproxy', ['-v']), wrk: first('wrk', ['-v']) };
}

async function main(): Promise<void> {
  requireTools(['nginx', 'wrk']);
  ensureBuilt(say);
  const ctx = new BenchContext();
  try {
    await bench(ctx);
  } finally {
    ctx.cleanup();
  }
}

async function bench(ctx: BenchContext): Promise<void> {
  say(`starting backends and contenders in ${ctx.dir} …`);
  const { ports, upstreams } = await startNginxBackends(ctx);
  // Started side by side: on a loaded machine a Node process can take many seconds to come up.
  const [nginxProxy, haproxy, ...nodeContenders] = await Promise.all([
    startNginxProxy(ctx, upstreams),
    has('haproxy') ? startHaproxy(ctx, upstreams) : undefined,
    startNodeHttpProxy(ctx, upstreams),
    startNodeHello(ctx),
    startUndiciFloor(ctx, upstreams),
    startVelocity(ctx, 'velocity', upstreams),
    startVelocity(ctx, 'velocity+features', upstreams, withFeatures(ctx)),
    startVelocity(ctx, `velocity workers=auto`, upstreams, { extra: 'workers: auto', threads: autoThreads }),
    // The smoke run (--quick) leaves out the contenders that only compare costs: each Node process
    // takes many seconds to start on a loaded machine, and the smoke run has a time bound.
    ...(quick
      ? []
      : [
          startFastifyProxy(ctx, upstreams),
          startRawFloor(ctx, upstreams),
          startDirectFloor(ctx, upstreams),
          // What middleware costs (docs/routes-and-middleware.md): a route with three header rules, and compression.
          startVelocity(ctx, 'velocity+3 header rules', upstreams, { service: HEADER_RULES_SERVICE }),
          startVelocity(ctx, 'velocity+compress', upstreams, { service: '    middleware: [{ compress: { encodings: [gzip], types: [application/octet-stream, text/*] } }]\n' }),
        ]),
  ]);
  if (!haproxy) say('haproxy is not installed: left out (sudo apt-get install haproxy)');
  const contenders: Contender[] = [{ name: 'direct', port: ports[0] as number, pid: undefined, threads: 1 }, nginxProxy, ...(haproxy ? [haproxy] : []), ...nodeContenders];

  const post = ctx.postScript(65536);
  const core = ['direct', 'nginx', 'haproxy', 'node-http-proxy', 'fastify-http-proxy', 'velocity'];
  const scenarios: Scenario[] = [
    {
      name: 'GET c=50',
      path: '/',
      wrk: ['-t1', '-c50'],
      contenders: [
        ...core,
        'velocity+features',
        'velocity workers=auto',
        'undici floor (no features)',
        'raw floor (no features)',
        'direct floor (no features)',
        'node http (no proxy)',
        'velocity+3 header rules',
        'velocity+compress',
      ],
    },
    // The 1 MB body with Accept-Encoding: gzip, passed through as it is, and gzipped (level 1) by Velocity.
    { name: 'GET 1MB gzip c=10', path: '/big', wrk: ['-t1', '-c10', '-H', 'Accept-Encoding: gzip'], contenders: ['velocity', 'velocity+compress'] },
    // @fastify/http-proxy is left out at c=256: cold, on a busy machine, it answers nothing within a quick run's second.
    { name: 'GET c=256', path: '/', wrk: ['-t1', '-c256'], contenders: [...core.filter((n) => n !== 'fastify-http-proxy'), 'velocity workers=auto'] },
    { name: 'GET 1MB c=10', path: '/big', wrk: ['-t1', '-c10'], contenders: core },
    { name: 'POST 64KB c=20', path: '/post', wrk: ['-t1', '-c20', '-s', post], contenders: core },
    { name: 'GET c=1', path: '/', wrk: ['-t1', '-c1'], contenders: [...core, 'velocity+features'] },
  ].filter((s) => !args.only || s.name.includes(args.only));
  const byName = new Map(contenders.map((c) => [c.name, c]));
  for (const s of scenarios) s.contenders = s.contenders.filter((n) => byName.has(n));

  const total = scenarios.reduce((n, s) => n + s.contenders.length, 0) * rounds;
  const warmups = quick ? 0 : scenarios.reduce((n, s) => n + s.contenders.length, 0);
  say(
    `${total} runs of ${seconds}s (${rounds} alternated rounds) + ${warmups} warm-ups of ${WARMUP_SECONDS}s: about ${Math.ceil(((total * seconds + warmups * WARMUP_SECONDS) * 1.1) / 60)} min`,
  );
  const runs: Run[] = [];
  let done = 0;
  const started = Date.now();
  for (const scenario of scenarios) {
    const list = scenario.contenders.map((n) => byName.get(n) as Contender);
    if (!quick) for (const c of list) await runWrk(`http://127.0.0.1:${c.port}${scenario.path}`, scenario.wrk, WARMUP_SECONDS, c.pid);
    for (let round = 0; round < rounds; round++) {
      for (const c of list) {
        const url = `http://127.0.0.1:${c.port}${scenario.path}`;
        let result = await runWrk(url, scenario.wrk, seconds, c.pid);
        // The smoke run's one second can pass without a single answer on a machine busy with other work (a
        // CI run saw it at c=256); one longer run then says whether the contender serves at all.
        if (quick && result.requests === 0) result = await runWrk(url, scenario.wrk, QUICK_RETRY_SECONDS, c.pid);
        runs.push({ scenario: scenario.name, contender: c.name, round, ...result });
        done++;
        const eta = Math.round((((Date.now() - started) / done) * (total - done)) / 1000);
        process.stderr.write(`\r[${done}/${total}] ${scenario.name} · ${c.name}: ${Math.round(result.rps)} req/s, p99 ${result.p99.toFixed(2)} ms · ${eta}s left      `);
      }
    }
  }
  process.stderr.write('\n');

  const rows = summarize(scenarios, runs, byName);
  const targets = assessTargets(rows, runs);
  const table = formatTable(rows);
  console.log(
    `\nVelocity benchmark: wrk, ${seconds} s × ${rounds} alternated rounds (medians), 3 nginx backends (21-byte body), ${cpus().length} CPUs, load ${loadavg()[0]?.toFixed(1)}\n`,
  );
  console.log(table);
  console.log('\nTargets (issue 17):');
  for (const t of targets) console.log(`  ${t.met === undefined ? '·' : t.met ? '✓' : '✗'} ${t.name}: ${t.value} (target ${t.target})`);
  // gRPC unary (bench/grpc.ts): needs h2load (Debian nghttp2-client); not part of the quick smoke run.
  const grpcRows = !quick && !args.only && has('h2load') ? await grpcScenario(ctx, seconds, rounds, say) : undefined;
  if (grpcRows) console.log(`\ngRPC unary (h2load -c 10 -m 10, 2 node:http2 gRPC servers):\n\n${formatGrpcTable(grpcRows)}`);
  else if (!quick) say('gRPC unary scenario skipped (h2load not installed, or --only given): apt-get install nghttp2-client');
  const file = resultsFile('bench');
  writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), seconds, rounds, cpus: cpus().length, versions: versions(), rows, grpcRows, targets, runs }, null, 2));
  console.log(`\nresults: ${file}`);
}

function summarize(scenarios: Scenario[], runs: Run[], byName: Map<string, Contender>): Row[] {
  const rows: Row[] = [];
  for (const s of scenarios) {
    for (const name of s.contenders) {
      const mine = runs.filter((r) => r.scenario === s.name && r.contender === name);
      const vsNginx = (f: (r: Run) => number) => sameRoundRatios(runs, s.name, name, 'nginx', f)?.median;
      rows.push({
        scenario: s.name,
        contender: name,
        rps: median(mine.map((r) => r.rps)),
        p50: median(mine.map((r) => r.p50)),
        p99: median(mine.map((r) => r.p99)),
        errors: mine.reduce((n, r) => n + r.errors, 0),
        rssMb: Math.max(...mine.map((r) => r.rssMb)),
        cpuUs: median(mine.map((r) => r.cpuUsPerRequest)),
        userUs: median(mine.map((r) => r.userUsPerRequest)),
        systemUs: median(mine.map((r) => r.systemUsPerRequest)),
        threads: byName.get(name)?.threads ?? 1,
        vsNginx: vsNginx((r) => r.rps),
        p99VsNginx: vsNginx((r) => r.p99),
        cpuVsNginx: vsNginx((r) => r.cpuUsPerRequest),
      });
    }
  }
  return rows;
}

function formatTable(rows: Row[]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [
    line(['scenario', 'contender', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'RSS MB', 'CPU µs/req', 'req/s × nginx', 'user µs', 'sys µs', 'CPU × nginx']),
    line(['---', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']),
    ...rows.map((r) =>
      line([
        r.scenario,
        r.contender,
        Math.round(r.rps),
        r.p50.toFixed(2),
        r.p99.toFixed(2),
        r.errors,
        r.rssMb ? `${Math.round(r.rssMb)}${r.threads > 1 ? ` (${Math.round(r.rssMb / r.threads)}/thread)` : ''}` : '-',
        r.cpuUs ? r.cpuUs.toFixed(0) : '-',
        r.vsNginx === undefined ? '-' : r.vsNginx.toFixed(2),
        r.cpuUs ? r.userUs.toFixed(0) : '-',
        r.cpuUs ? r.systemUs.toFixed(0) : '-',
        r.cpuVsNginx === undefined ? '-' : r.cpuVsNginx.toFixed(2),
      ]),
    ),
  ].join('\n');
}

interface Target {
  name: string;
  value: string;
  target: string;
  met: boolean | undefined;
}

interface Bound {
  text: string;
  met: (v: number) => boolean;
}
/** A difference with its sign: +1.5, −1.6. */
const signed = (x: number): string => `${x < 0 ? '−' : '+'}${Math.abs(x).toFixed(1)}`;
const atMost = (x: number): Bound => ({ text: `≤ ${x}`, met: (v) => v <= x });
const atLeast = (x: number): Bound => ({ text: `≥ ${x}`, met: (v) => v >= x });

function assessTargets(rows: Row[], runs: Run[]): Target[] {
  const row = (scenario: string, contender: string) => rows.find((r) => r.scenario === scenario && r.contender === contender);
  const out: Target[] = [];
  /** A same-round ratio, met by its median (no bound: a reference line); the rounds' spread says by how much. */
  const ratio = (name: string, scenario: string, a: string, b: string, f: (r: Run) => number, bound?: Bound) => {
    const r = sameRoundRatios(runs, scenario, a, b, f);
    if (!r || !Number.isFinite(r.median)) return;
    const spread = r.min === r.max ? '' : ` (rounds ${r.min.toFixed(2)}–${r.max.toFixed(2)})`;
    out.push({ name, value: `${r.median.toFixed(2)}${spread}`, target: bound?.text ?? 'for reference', met: bound?.met(r.median) });
  };
  const c50 = 'GET c=50';
  const featuresVsNginx = (what: string, f: (r: Run) => number, bound: Bound) =>
    ratio(`single thread, features on: ${what} × nginx (GET c=50)`, c50, 'velocity+features', 'nginx', f, bound);
  featuresVsNginx('CPU per request', (r) => r.cpuUsPerRequest, atMost(1.7));
  featuresVsNginx('req/s', (r) => r.rps, atLeast(0.55));
  featuresVsNginx('p99', (r) => r.p99, atMost(1.5));
  for (const other of ['fastify-http-proxy', 'node-http-proxy']) {
    ratio(`req/s × ${other} (GET c=50)`, c50, 'velocity', other, (r) => r.rps, atLeast(3));
    // Not a target: the same ratio for nginx, what this machine lets any proxy reach. wrk and the backends share
    // its cores with the proxy, so the faster a proxy, the more of its req/s they take back.
    ratio(`nginx's own req/s × ${other} (GET c=50)`, c50, 'nginx', other, (r) => r.rps);
  }
  const features = row(c50, 'velocity+features');
  const velocity = row(c50, 'velocity');
  const floor = row('GET c=50', 'undici floor (no features)');
  if (velocity && floor?.rps) {
    // Not a target: Velocity against node:http + undici with no features, the design it replaced.
    out.push({ name: 'req/s × undici floor (node:http + undici, no features; GET c=50)', value: (velocity.rps / floor.rps).toFixed(2), target: 'for reference', met: undefined });
  }
  // Not a target: how wide each latency tail is beside its mean (50 connections ÷ req/s, Little's law).
  // A bare Node proxy's ratio says how much of Velocity's is one Node event loop sharing this machine's cores.
  const tails = ['nginx', 'raw floor (no features)', 'direct floor (no features)', 'velocity', 'velocity+features'].flatMap((name) => {
    const r = row('GET c=50', name);
    return r?.rps ? [`${name} ${(r.p99 / ((50 / r.rps) * 1000)).toFixed(2)}`] : [];
  });
  if (tails.length) out.push({ name: 'p99 ÷ mean latency (GET c=50)', value: tails.join(', '), target: 'for reference', met: undefined });
  // Not a target: what Velocity's own work per request adds to the floor of its socket I/O design.
  const directFloor = row('GET c=50', 'direct floor (no features)');
  if (features?.p99VsNginx && directFloor?.cpuUs && directFloor.p99VsNginx) {
    out.push({
      name: 'velocity+features over the direct floor (GET c=50)',
      value: `${signed(features.cpuUs - directFloor.cpuUs)} µs CPU per request; p99 × nginx ${features.p99VsNginx.toFixed(2)} against the floor's ${directFloor.p99VsNginx.toFixed(2)}`,
      target: 'for reference',
      met: undefined,
    });
  }
  const v1 = row('GET c=1', 'velocity');
  const d1 = row('GET c=1', 'direct');
  if (v1 && d1) {
    const added = v1.p50 - d1.p50;
    out.push({ name: 'added latency at c=1 (p50 over direct)', value: `${added.toFixed(3)} ms`, target: '≤ 0.1 ms', met: added <= 0.1 });
  }
  for (const scenario of ['GET 1MB c=10', 'POST 64KB c=20']) ratio(`req/s × nginx (${scenario})`, scenario, 'velocity', 'nginx', (r) => r.rps, atLeast(1));
  const rss = rows.filter((r) => r.contender.startsWith('velocity') && r.rssMb > 0).map((r) => r.rssMb / r.threads);
  if (rss.length) {
    const peak = Math.max(...rss);
    out.push({ name: 'peak RSS per thread under load (flatness over 1M requests: npm run soak)', value: `${Math.round(peak)} MB`, target: '≤ 100 MB', met: peak <= 100 });
  }
  return out;
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench failed: ${(err as Error).message}`);
    process.exit(1);
  },
);
