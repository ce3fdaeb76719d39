/**
 * Building blocks of the benchmarks (run.ts, soak.ts, and the feature-cost
 * scripts beside them): a temp dir, processes started and stopped by PID, the
 * nginx backends, the contenders on those backends, wrk runs with RSS sampling.
 * Every process is a child of the bench; all are killed when it ends.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { involuntarySwitches } from './kernel-time.ts';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The body every nginx backend answers with: 21 bytes, as in the lab anchors. */
export const SMALL_BODY = 'hello from a backend\n';
/**
 * nginx as one foreground process: no daemon and no master, so the PID the bench
 * started is the one event loop that serves (the same as 1 worker) and the one to stop.
 */
const NGINX_FOREGROUND = 'daemon off; master_process off; worker_processes 1;';

export interface Contender {
  name: string;
  port: number;
  /** The process whose RSS is reported (undefined for the backends themselves). */
  pid: number | undefined;
  /** Data-path threads, for RSS per thread (1 for single-threaded servers). */
  threads: number;
}

export interface WrkResult {
  rps: number;
  /** Milliseconds. */
  p50: number;
  p99: number;
  errors: number;
  requests: number;
}

export class BenchContext {
  readonly dir = mkdtempSync(join(tmpdir(), 'velocity-bench-'));
  private readonly children: ChildProcess[] = [];
  private readonly cleanups: (() => void)[] = [];

  constructor() {
    // nginx workers run as an unprivileged user: they must be able to read files here.
    chmodSync(this.dir, 0o755);
    const stop = () => {
      this.cleanup();
      process.exit(130);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }

  file(name: string, content: string | Buffer): string {
    const path = join(this.dir, name);
    writeFileSync(path, content);
    chmodSync(path, 0o644);
    return path;
  }

  /** A wrk script that POSTs `bytes` bytes per request (the backends' /post sink answers them). */
  postScript(bytes: number): string {
    return this.file(`post-${bytes}.lua`, `wrk.method = "POST"\nwrk.body = string.rep("x", ${bytes})\nwrk.headers["Content-Type"] = "application/octet-stream"\n`);
  }

  /** Starts a process in the foreground (never a daemon) so it can be stopped by PID; its stdout goes to `stdoutFile` if given. */
  run(cmd: string, argv: string[], env: NodeJS.ProcessEnv = {}, stdoutFile?: string): ChildProcess {
    const stdout = stdoutFile ? openSync(stdoutFile, 'a') : 'ignore';
    const child = spawn(cmd, argv, { stdio: ['ignore', stdout, 'pipe'], env: { ...process.env, ...env } });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    child.once('exit', (code, signal) => {
      if (!this.stopping && code !== 0 && signal === null) process.stderr.write(`\n${cmd} exited with ${code}: ${stderr}\n`);
    });
    this.children.push(child);
    return child;
  }

  onCleanup(fn: () => void): void {
    this.cleanups.push(fn);
  }

  private stopping = false;

  cleanup(): void {
    this.stopping = true;
    for (const fn of this.cleanups) {
      try {
        fn();
      } catch {}
    }
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export async function waitPort(port: number, ms = 180_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on 127.0.0.1:${port} after ${ms} ms`);
}

export function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function requireTools(tools: string[]): void {
  const missing = tools.filter((t) => !has(t));
  if (missing.length > 0) throw new Error(`${missing.join(', ')} is not installed (sudo apt-get install nginx haproxy wrk)`);
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** The bench runs the real binary: builds dist/ when it is missing or older than src/. */
export function ensureBuilt(log: (line: string) => void): void {
  const cli = join(ROOT, 'dist/cli.js');
  if (existsSync(cli) && statSync(cli).mtimeMs >= newestMtime(join(ROOT, 'src'))) return;
  log('building dist/ (npm run build) …');
  try {
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' });
  } catch {
    // tsc exits non-zero on type errors but still emits; a missing dist/cli.js is what stops the bench.
    if (!existsSync(cli)) throw new Error('npm run build failed: dist/cli.js is missing');
  }
}

/** Three (or `count`) nginx backends: 21-byte body on /, a 1 MB file on /big, POST sink on /post. */
export async function startNginxBackends(ctx: BenchContext, count = 3): Promise<{ ports: number[]; upstreams: string[] }> {
  const ports = await Promise.all(Array.from({ length: count }, () => freePort()));
  ctx.file('big.bin', Buffer.alloc(1024 * 1024, 120));
  const conf = ctx.file(
    'backends.conf',
    `${NGINX_FOREGROUND} pid ${ctx.dir}/backends.pid; error_log ${ctx.dir}/backends.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
${ports.map((p) => `server { listen 127.0.0.1:${p}; client_max_body_size 1m; location / { return 200 "${SMALL_BODY.replace('\n', '\\n')}"; } location /big { alias ${ctx.dir}/big.bin; } location /post { return 200 "ok\\n"; } }`).join('\n')}
}`,
  );
  ctx.run('nginx', ['-c', conf, '-p', ctx.dir]);
  await Promise.all(ports.map((p) => waitPort(p)));
  return { ports, upstreams: ports.map((p) => `127.0.0.1:${p}`) };
}

export async function startNginxProxy(ctx: BenchContext, upstreams: string[]): Promise<Contender> {
  const port = await freePort();
  const conf = ctx.file(
    'nginx.conf',
    `${NGINX_FOREGROUND} pid ${ctx.dir}/nginx.pid; error_log ${ctx.dir}/nginx.err;
events { worker_connections 10000; }
http { keepalive_requests 1000000;
log_format json escape=json '{"time":"$time_iso8601","remote":"$remote_addr","method":"$request_method","uri":"$request_uri","status":$status,"bytes":$body_bytes_sent,"upstream":"$upstream_addr","ms":$request_time}';
access_log ${ctx.dir}/nginx-access.log json buffer=64k flush=1s;
upstream b { ${upstreams.map((u) => `server ${u};`).join(' ')} keepalive 128; }
server { listen 127.0.0.1:${port}; client_max_body_size 1m;
  location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } } }`,
  );
  const child = ctx.run('nginx', ['-c', conf, '-p', ctx.dir]);
  await waitPort(port);
  return { name: 'nginx', port, pid: child.pid, threads: 1 };
}

export async function startHaproxy(ctx: BenchContext, upstreams: string[]): Promise<Contender> {
  const port = await freePort();
  const conf = ctx.file(
    'haproxy.cfg',
    `global
  nbthread 1
  maxconn 9000
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend f
  bind 127.0.0.1:${port}
  default_backend b
backend b
  balance roundrobin
${upstreams.map((u, i) => `  server s${i} ${u}`).join('\n')}
`,
  );
  // Its request log goes to stdout, and stdout to a file: HAProxy has no file logging of its own.
  const child = ctx.run('haproxy', ['-f', conf, '-db'], {}, join(ctx.dir, 'haproxy-access.log'));
  await waitPort(port);
  return { name: 'haproxy', port, pid: child.pid, threads: 1 };
}

/** A Node script from bench/ run as a contender (with `nodeFlags`): its first argument is the port to listen on. */
async function startNodeScript(ctx: BenchContext, name: string, script: string, args: string[] = [], nodeFlags: string[] = []): Promise<Contender> {
  const port = await freePort();
  const child = ctx.run(process.execPath, [...nodeFlags, join(ROOT, 'bench', script), String(port), ...args]);
  await waitPort(port);
  return { name, port, pid: child.pid, threads: 1 };
}

/** A proxy script from bench/: the upstreams' URLs follow the port (and `flags`). */
const startProxyScript = (ctx: BenchContext, name: string, script: string, upstreams: string[], flags: string[] = [], nodeFlags: string[] = []) =>
  startNodeScript(ctx, name, script, [...flags, ...upstreams.map((u) => `http://${u}`)], nodeFlags);

export const startNodeHttpProxy = (ctx: BenchContext, upstreams: string[]) => startProxyScript(ctx, 'node-http-proxy', 'node-http-proxy.ts', upstreams);

/** @fastify/http-proxy with Fastify's request log to a file (one upstream: the plugin takes one). */
export const startFastifyProxy = async (ctx: BenchContext, upstreams: string[]) =>
  startNodeScript(ctx, 'fastify-http-proxy', 'fastify-proxy.ts', [join(ctx.dir, 'fastify-access.log'), `http://${upstreams[0]}`]);

/** node:http answering by itself (no upstream): the ceiling of one Node event loop here. */
export const startNodeHello = (ctx: BenchContext) => startNodeScript(ctx, 'node http (no proxy)', 'node-hello.ts');

/** The least a node:http + undici proxy can do (bench/undici-floor.ts): Velocity's ceiling on one thread. */
export const startUndiciFloor = (ctx: BenchContext, upstreams: string[]) => startProxyScript(ctx, 'undici floor (no features)', 'undici-floor.ts', upstreams);

/**
 * About the least a Node proxy on raw sockets does (bench/raw-floor.ts): beside Velocity it tells what in
 * a latency or CPU figure is one Node event loop on this machine and what is Velocity's.
 */
export const startRawFloor = (ctx: BenchContext, upstreams: string[], nodeFlags: string[] = []) =>
  startProxyScript(ctx, 'raw floor (no features)', 'raw-floor.ts', upstreams, [], nodeFlags);

/**
 * The same proxy on Velocity's own socket I/O (`bench/raw-floor.ts --direct`: reads past net's
 * onStreamRead, writes straight to the handle, from dist/): the floor of Velocity's design, so the gap
 * from it to Velocity is Velocity's own work per request.
 */
export const startDirectFloor = (ctx: BenchContext, upstreams: string[], nodeFlags: string[] = []) =>
  startProxyScript(ctx, 'direct floor (no features)', 'raw-floor.ts', upstreams, ['--direct'], nodeFlags);

export interface VelocityOptions {
  /** Top-level config lines (workers, access_log, …). */
  extra?: string;
  /** Lines inside the service (health, policy, …), indented by 4 spaces. */
  service?: string;
  /** Data-path threads the config asks for (for RSS per thread). */
  threads?: number;
  /** Write a V8 CPU profile of the process to this directory (on exit). */
  cpuProfDir?: string;
  /** More Node flags (e.g. --perf-basic-prof for perf to name JavaScript frames). */
  nodeFlags?: string[];
  /** How long to wait for it to listen (a loaded machine can take well over the default). */
  startMs?: number;
  /** The checkout whose dist/cli.js runs (default: this one), to compare two builds in one run. */
  root?: string;
}

/**
 * "Features on" in every bench: metrics, a JSON access log to a file in the bench's folder, and
 * active health checks — what an operator runs in production, beside the plain proxy.
 */
export function withFeatures(ctx: BenchContext, logName = 'access.log'): Pick<VelocityOptions, 'extra' | 'service'> {
  return {
    extra: `metrics: { enabled: true }\naccess_log: { output: ${join(ctx.dir, logName)}, format: json }`,
    service: '    health: { type: http, path: /, interval: 1s, timeout: 1s }\n',
  };
}

/** A route with three header rules (two request, one response): bench/run.ts's `velocity+3 header rules`, `perf.ts --header-rules`. */
export const HEADER_RULES_SERVICE =
  '    middleware: [{ headers: { request: { set: { x-client: "\x24{client_ip}", x-env: bench } }, response: { set: { x-served-by: velocity } } } }]\n';

/**
 * A profiling script's body with a BenchContext, cleaned up after; the process then exits: 0 when the
 * body ended, 1 with `NAME failed: …` when it threw.
 */
export function runProfiling(name: string, body: (ctx: BenchContext) => Promise<void>): void {
  const ctx = new BenchContext();
  body(ctx)
    .finally(() => ctx.cleanup())
    .then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`${name} failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
}

/** `perf script` of a recording, as text. */
export const perfScript = (data: string, fields: string[]): string =>
  execFileSync('perf', ['script', '-i', data, ...fields], { encoding: 'utf8', maxBuffer: 1024 * 1024 * 1024, stdio: ['ignore', 'pipe', 'ignore'] });

/** The flags the profiling scripts (perf.ts, profile.ts) share: seconds of load, wrk connections, rows to print. */
export const profilingOptions = (top: string) =>
  ({
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    top: { type: 'string', default: top },
  }) as const;

/** The real binary (dist/cli.js start) with a config written from the options. */
export async function startVelocity(ctx: BenchContext, name: string, upstreams: string[], options: VelocityOptions = {}): Promise<Contender & { stop(): Promise<void> }> {
  const port = await freePort();
  const file = ctx.file(
    `${name.replace(/[^a-z0-9]+/gi, '-')}.yaml`,
    `listen: "127.0.0.1:${port}"
admin: { listen: "127.0.0.1:0" }
${options.extra ?? ''}
services:
  - name: bench
    servers: [${upstreams.map((u) => `http://${u}`).join(', ')}]
${options.service ?? ''}`,
  );
  const argv = [
    ...(options.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`] : []),
    ...(options.nodeFlags ?? []),
    join(options.root ?? ROOT, 'dist/cli.js'),
    'start',
    '--config',
    file,
  ];
  const child = ctx.run(process.execPath, argv, { VELOCITY_LOG_LEVEL: 'warn' });
  await waitPort(port, options.startMs);
  return {
    name,
    port,
    pid: child.pid,
    threads: options.threads ?? 1,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** Resident memory of a process in MB (all its threads), 0 when unknown. */
export function rssMb(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

export function parseWrk(out: string): WrkResult {
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? 0);
  const ms = (label: string) => {
    const m = new RegExp(`\\s${label}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
    if (!m) return 0;
    const v = Number(m[1]);
    return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
  };
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = num(/Non-2xx or 3xx responses: (\d+)/) + (socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  return { rps: num(/Requests\/sec:\s+([\d.]+)/), p50: ms('50'), p99: ms('99'), errors, requests: num(/(\d+) requests in/) };
}

/** The fields of /proc/PID/stat after the command name (which may hold spaces); undefined when unknown. */
function statFields(pid: number | undefined): string[] | undefined {
  if (!pid) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** CPU time a process used so far in user and in system mode (all threads), in ms; zeros when unknown. */
export function cpuTimes(pid: number | undefined): { user: number; sys: number } {
  const fields = statFields(pid);
  // utime and stime are the 12th and 13th fields after the command name.
  return fields ? { user: (Number(fields[11]) * 1000) / CLOCK_TICKS, sys: (Number(fields[12]) * 1000) / CLOCK_TICKS } : { user: 0, sys: 0 };
}

/** Minor page faults a process took so far (all threads; the 8th field after the command name); 0 when unknown. */
function minorFaults(pid: number | undefined): number {
  return Number(statFields(pid)?.[7] ?? 0);
}

/** CPU time a process used so far (user + system, all threads), in ms; 0 when unknown. */
export function cpuMs(pid: number | undefined): number {
  const { user, sys } = cpuTimes(pid);
  return user + sys;
}
const CLOCK_TICKS = 100;

export interface LoadResult extends WrkResult {
  /** Peak resident memory while the load ran, MB. */
  rssMb: number;
  /** CPU time the contender spent per request, µs (0 when unknown): less noisy than req/s on a shared machine. */
  cpuUsPerRequest: number;
  /** The same, split: user-space and kernel time per request, µs. */
  userUsPerRequest: number;
  systemUsPerRequest: number;
  /** Involuntary context switches per request: on this box they follow user time and cost system time (docs/performance.md). */
  switchesPerRequest: number;
  /**
   * Minor page faults the contender took during the run: memory handed back to the kernel while idle and
   * touched again under load (each is costly on this virtual machine; docs/performance.md, the latency tail).
   */
  pageFaults: number;
}

/**
 * wrk counts a response slower than its default 2 s as a socket-timeout error and leaves it out of the
 * latency; on a shared box a stall can pass that, so a slow answer stays in p99, where it belongs.
 */
const WRK_TIMEOUT = '--timeout=30s';

/** One bounded wrk run; samples the contender's RSS while it runs and reports the peak and its CPU per request. */
export function runWrk(url: string, args: string[], seconds: number, pid: number | undefined): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', [...args, `-d${seconds}s`, WRK_TIMEOUT, '--latency', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    let peak = rssMb(pid);
    const cpuBefore = cpuTimes(pid);
    const switchesBefore = involuntarySwitches(pid);
    const faultsBefore = minorFaults(pid);
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssMb(pid));
    }, 250);
    const killer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearInterval(sampler);
      clearTimeout(killer);
      if (code !== 0) return reject(new Error(`wrk exited with ${code}: ${out.trim()}`));
      const result = parseWrk(out);
      const after = cpuTimes(pid);
      const perRequest = (ms: number) => (pid && result.requests > 0 ? (ms * 1000) / result.requests : 0);
      const user = perRequest(after.user - cpuBefore.user);
      const system = perRequest(after.sys - cpuBefore.sys);
      const switches = result.requests > 0 ? (involuntarySwitches(pid) - switchesBefore) / result.requests : 0;
      resolve({
        ...result,
        rssMb: Math.max(peak, rssMb(pid)),
        cpuUsPerRequest: user + system,
        userUsPerRequest: user,
        systemUsPerRequest: system,
        switchesPerRequest: switches,
        pageFaults: minorFaults(pid) - faultsBefore,
      });
    });
  });
}

export function resultsFile(prefix: string): string {
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  return join(dir, `${prefix}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
}

/** The median; of an even count, the mean of the middle two (not the upper one: of two rounds, that was always the worse). */
export const median = (xs: readonly number[]): number => {
  if (xs.length === 0) return 0;
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/**
 * How long each contender runs unmeasured before a scenario's rounds: a fresh Node process spends its
 * first seconds of load compiling (turns of 20+ ms of CPU in the first ~200 ms), which is a cold start,
 * not its steady-state latency; 1 s left the first measured round with p99s 2–3× the later ones.
 */
export const WARMUP_SECONDS = 3;

/** One wrk run of one contender in one scenario and round. */
export interface Run extends LoadResult {
  scenario: string;
  contender: string;
  round: number;
}

interface Ratio {
  median: number;
  min: number;
  max: number;
}

/**
 * f(a) ÷ f(b) taken round by round, then the median and the spread of those ratios. Rounds alternate the
 * contenders within seconds of each other, so a same-round ratio cancels most of what the shared machine's
 * other work does to both; a ratio of two medians mixes rounds taken under different loads.
 */
export function sameRoundRatios(runs: Run[], scenario: string, a: string, b: string, f: (r: Run) => number): Ratio | undefined {
  const ofB = new Map(runs.filter((r) => r.scenario === scenario && r.contender === b).map((r) => [r.round, f(r)]));
  // 0 is "not measured" (the CPU of a contender without a process of ours: direct): no ratio that round.
  const ratios = runs.flatMap((r) => {
    const other = r.scenario === scenario && r.contender === a ? ofB.get(r.round) : undefined;
    const mine = f(r);
    return other && mine ? [mine / other] : [];
  });
  return ratios.length ? { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) } : undefined;
}

/** One line of the result table (and of the JSON file): medians over the rounds of one contender in one scenario. */
export interface Row {
  scenario: string;
  contender: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  rssMb: number;
  /** CPU time per request, µs (all threads of the process), and its user/system split. */
  cpuUs: number;
  userUs: number;
  systemUs: number;
  /** Data-path threads (RSS per thread = rssMb / threads). */
  threads: number;
  /** Medians over rounds of this contender's req/s, p99 and CPU per request ÷ nginx's in the same round. */
  vsNginx: number | undefined;
  p99VsNginx: number | undefined;
  cpuVsNginx: number | undefined;
}
