/**
 * `npm run soak`: 1,000,000 requests (bounded in time) through the real binary
 * with health checks, metrics and the access log on, in front of three
 * `velocity backend` processes. Reports RSS samples after warm-up with their
 * slope (MB per 100k requests), open file descriptors before and after, and
 * errors. `--requests N --seconds S --concurrency C` override the defaults.
 * The short version runs in the test suite (test/hardening/soak.test.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';

const root = fileURLToPath(new URL('..', import.meta.url));

export interface SoakOptions {
  requests: number;
  seconds: number;
  concurrency: number;
  /** Requests before RSS and fds are first sampled (default: a tenth, at most 100k). */
  warmup?: number;
  /** Progress lines go here (the script prints them; the test stays quiet). */
  log?: (line: string) => void;
}

export interface SoakResult {
  sent: number;
  errors: number;
  /** First few error descriptions. */
  errorSamples: string[];
  elapsedMs: number;
  /** [requests done, RSS MB] after warm-up. */
  rssSamples: [number, number][];
  /** Least-squares slope of RSS over requests, MB per 100k requests. */
  slopeMbPer100k: number;
  fdsBefore: number;
  fdsAfter: number;
}

function waitFor(child: ChildProcess, pattern: RegExp, ms = 15_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}: ${text}`)), ms);
    const onData = (b: Buffer) => {
      text += b.toString();
      const m = text.match(pattern);
      if (m) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        child.stderr?.off('data', onData);
        resolve(m);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
  });
}

const statusMb = (pid: number, field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
const rssMb = (pid: number) => statusMb(pid, 'VmRSS');
/** Anonymous (heap, arenas, stacks) and file-backed (the node binary's pages) parts of RSS: they move for different reasons. */
const rssParts = (pid: number) => `anon ${statusMb(pid, 'RssAnon').toFixed(1)} + file ${statusMb(pid, 'RssFile').toFixed(1)}`;
const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

/** Least-squares slope of y over x. */
export function slope(points: readonly [number, number][]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const log = options.log ?? (() => undefined);
  const dir = mkdtempSync(join(tmpdir(), 'velocity-soak-'));
  const children: ChildProcess[] = [];
  const drain = (c: ChildProcess) => {
    c.stdout?.resume();
    c.stderr?.resume();
  };
  try {
    const backends = await Promise.all(
      [1, 2, 3].map(async (i) => {
        const child = spawn(process.execPath, [join(root, 'bin/velocity.js'), 'backend', '--port', '0', '--name', `soak${i}`], { stdio: ['ignore', 'pipe', 'pipe'] });
        children.push(child);
        const m = await waitFor(child, /listening on 127\.0\.0\.1:(\d+)/);
        drain(child);
        return `http://127.0.0.1:${m[1]}`;
      }),
    );
    const config = join(dir, 'velocity.yaml');
    writeFileSync(
      config,
      `listen: "127.0.0.1:0"
admin: { enabled: true, listen: "127.0.0.1:0" }
metrics: { enabled: true }
access_log: { output: ${JSON.stringify(join(dir, 'access.log'))}, format: json }
services:
  - name: soak
    health: { type: http, path: /health, interval: 1s }
    servers: [${backends.join(', ')}]
`,
    );
    const velocity = spawn(process.execPath, [join(root, 'bin/velocity.js'), 'start', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(velocity);
    const m = await waitFor(velocity, /"listen":\["[^"]*:(\d+)"/);
    drain(velocity);
    const pid = velocity.pid as number;
    const url = `http://127.0.0.1:${m[1]}/`;
    const agent = new Agent({ connections: options.concurrency, keepAliveTimeout: 10_000 });

    const warmup = options.warmup ?? Math.min(100_000, Math.floor(options.requests / 10));
    const sampleEvery = Math.max(1000, Math.floor((options.requests - warmup) / 40));
    const rssSamples: [number, number][] = [];
    const errorSamples: string[] = [];
    let errors = 0;
    let done = 0;
    let next = 0;
    let fdsBefore = 0;
    const started = Date.now();
    const deadline = started + options.seconds * 1000;
    const worker = async () => {
      while (next < options.requests && Date.now() < deadline) {
        next++;
        try {
          const res = await request(url, { dispatcher: agent });
          await res.body.dump();
          if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
        } catch (err) {
          errors++;
          if (errorSamples.length < 5) errorSamples.push(String(err));
        }
        done++;
        if (done === warmup) fdsBefore = fdCount(pid);
        if (done >= warmup && (done - warmup) % sampleEvery === 0) {
          rssSamples.push([done, rssMb(pid)]);
          log(`${done} requests, RSS ${rssMb(pid).toFixed(1)} MB (${rssParts(pid)}), ${errors} errors, ${Math.round(done / ((Date.now() - started) / 1000))} req/s`);
        }
      }
    };
    await Promise.all(Array.from({ length: options.concurrency }, worker));
    const elapsedMs = Date.now() - started;
    rssSamples.push([done, rssMb(pid)]);
    // Same client connections still open as at warm-up: the fd count is compared like for like.
    const fdsAfter = fdCount(pid);
    await agent.close();
    if (fdsBefore === 0) fdsBefore = fdsAfter;
    return { sent: done, errors, errorSamples, elapsedMs, rssSamples, slopeMbPer100k: slope(rssSamples) * 100_000, fdsBefore, fdsAfter };
  } finally {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const arg = (name: string, fallback: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback);
  const result = await runSoak({ requests: arg('--requests', 1_000_000), seconds: arg('--seconds', 600), concurrency: arg('--concurrency', 32), log: console.log });
  console.log(
    JSON.stringify(
      {
        sent: result.sent,
        errors: result.errors,
        errorSamples: result.errorSamples,
        seconds: Math.round(result.elapsedMs / 1000),
        reqPerSec: Math.round(result.sent / (result.elapsedMs / 1000)),
        rssFirstMb: result.rssSamples[0]?.[1].toFixed(1),
        rssLastMb: result.rssSamples.at(-1)?.[1].toFixed(1),
        slopeMbPer100k: result.slopeMbPer100k.toFixed(3),
        fdsBefore: result.fdsBefore,
        fdsAfter: result.fdsAfter,
      },
      null,
      2,
    ),
  );
  process.exit(result.errors === 0 ? 0 : 1);
}
