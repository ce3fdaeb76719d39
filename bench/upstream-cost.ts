/**
 * CPU per request of the upstream side, in process: keep-alive exchanges with an nginx
 * backend through the pool (connection picked, request head written, response read and
 * parsed, connection back to the pool), `--concurrency` of them in flight. A whole-proxy
 * A/B moves too much on a shared machine to show a change of a few per cent of the whole;
 * this isolates the upstream path. Two builds alternate round by round in one process:
 * this checkout's `dist/` (B) and `--base DIR`'s (A). nginx's own CPU is not counted.
 *
 *   node bench/upstream-cost.ts [--base DIR] [--requests 100000] [--rounds 8] [--concurrency 50]
 */
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { BenchContext, ensureBuilt, median, requireTools, startNginxBackends } from './lib.ts';

const { values: args } = parseArgs({
  options: {
    base: { type: 'string' },
    requests: { type: 'string', default: '100000' },
    rounds: { type: 'string', default: '8' },
    concurrency: { type: 'string', default: '50' },
  },
});

/** The header list Velocity sends for wrk's request (its Host, then what the proxy adds). */
const HEADERS = [
  'Host',
  '127.0.0.1:18110',
  'x-forwarded-for',
  '127.0.0.1',
  'x-forwarded-proto',
  'http',
  'x-forwarded-host',
  '127.0.0.1:18110',
  'x-request-id',
  '0b6f2a4c-3e51-4d7a-9c1e-5a8b7f3d2e10',
];

interface Build {
  name: string;
  /** Completes `n` exchanges; resolves with the response body bytes read (a check that the work was done). */
  run(n: number): Promise<number>;
}

async function load(name: string, root: string, port: number): Promise<Build> {
  const { PoolSet } = await import(pathToFileURL(join(root, 'dist', 'upstream', 'http1-pool.js')).href);
  const pool = new PoolSet().get(`http://127.0.0.1:${port}`, { host: '127.0.0.1', port }, { connectTimeout: 10_000, keepAliveTimeout: 60_000, tls: undefined });
  const concurrency = Number(args.concurrency);
  return {
    name,
    run: (n) =>
      new Promise((done, fail) => {
        let started = 0;
        let finished = 0;
        let bytes = 0;
        const next = (): void => {
          if (started >= n) return;
          started++;
          const request = { method: 'GET', path: '/', headers: HEADERS, body: null, responseHeaderTimeout: 60_000, idleTimeout: 60_000 };
          pool.request(request, {
            onInformational() {},
            onHead: () => false,
            onData(chunk: Buffer) {
              bytes += chunk.length;
              return true;
            },
            chunkReleased: () => true,
            // As the proxy's HTTP/1.1 response for a small body: done with the chunk when onData returns.
            copiesChunk: () => true,
            onEnd() {
              if (++finished === n) done(bytes);
              else next();
            },
            onError: fail,
          });
        };
        for (let k = 0; k < concurrency; k++) next();
      }),
  };
}

requireTools(['nginx']);
ensureBuilt((line) => process.stderr.write(`${line}\n`));
const ctx = new BenchContext();
try {
  const { ports } = await startNginxBackends(ctx, 1);
  const port = ports[0] as number;
  const builds = [await load('B (this tree)', resolve(import.meta.dirname, '..'), port)];
  if (args.base) builds.unshift(await load('A (base)', resolve(args.base), port));
  const n = Number(args.requests);
  for (const b of builds) await b.run(Math.min(n, 20_000)); // warm-up: connections open, code optimised
  const perBuild = new Map<string, { user: number[]; sys: number[] }>(builds.map((b) => [b.name, { user: [], sys: [] }]));
  const ratios: number[] = [];
  for (let round = 0; round < Number(args.rounds); round++) {
    const order = round % 2 === 0 ? builds : [...builds].reverse();
    const user = new Map<string, number>();
    for (const b of order) {
      const before = process.cpuUsage();
      const bytes = await b.run(n);
      const used = process.cpuUsage(before);
      if (bytes === 0) throw new Error(`${b.name}: no response bytes`);
      const entry = perBuild.get(b.name) as { user: number[]; sys: number[] };
      entry.user.push((used.user * 1000) / n);
      entry.sys.push((used.system * 1000) / n);
      user.set(b.name, used.user);
      process.stderr.write(`round ${round + 1} ${b.name}: user ${((used.user * 1000) / n).toFixed(0)} ns, sys ${((used.system * 1000) / n).toFixed(0)} ns per request\n`);
    }
    if (builds.length === 2) ratios.push((user.get('B (this tree)') as number) / (user.get('A (base)') as number));
  }
  console.log('| build | user ns/req | sys ns/req |\n|---|---:|---:|');
  for (const [name, e] of perBuild) console.log(`| ${name} | ${median(e.user).toFixed(0)} | ${median(e.sys).toFixed(0)} |`);
  if (ratios.length > 0) console.log(`\nuser CPU per request, B ÷ A per round: median ${median(ratios).toFixed(3)} (${ratios.map((r) => r.toFixed(2)).join(' ')})`);
} finally {
  ctx.cleanup();
}
