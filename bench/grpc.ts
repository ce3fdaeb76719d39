/**
 * The gRPC unary scenario: h2load sends unary calls (one gRPC message each,
 * `content-type: application/grpc`, `te: trailers`) over 10 connections × 10
 * streams to the server directly, through Velocity (h2c listener, h2c servers)
 * and through nginx `grpc_pass` (1 worker), on two node:http2 gRPC servers.
 * Runs alternate, A B C A B C …; reports calls/s, p50/p99 (from h2load's
 * per-call log) and CPU per call of the serving process.
 *
 *   node bench/grpc.ts [--seconds N] [--rounds N]     (also run by `npm run bench` when h2load is installed)
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BenchContext, type Contender, cpuMs, ensureBuilt, freePort, median, ROOT, requireTools, resultsFile, waitPort } from './lib.ts';

export interface GrpcRow {
  contender: string;
  callsPerSecond: number;
  p50: number;
  p99: number;
  errors: number;
  cpuUsPerCall: number;
}

/** EchoRequest { text: "hello" } in a gRPC frame. */
const CALL = Buffer.concat([Buffer.from([0, 0, 0, 0, 7, 0x0a, 5]), Buffer.from('hello')]);

async function startBackends(ctx: BenchContext): Promise<{ ports: number[]; pids: (number | undefined)[] }> {
  const ports = await Promise.all([freePort(), freePort()]);
  const pids = ports.map((p) => ctx.run(process.execPath, [join(ROOT, 'bench', 'grpc-backend.ts'), String(p)]).pid);
  await Promise.all(ports.map((p) => waitPort(p, 60_000)));
  return { ports, pids };
}

async function startVelocityGrpc(ctx: BenchContext, ports: number[]): Promise<Contender> {
  const port = await freePort();
  const file = ctx.file(
    'velocity-grpc.yaml',
    `listeners:
  - { type: http, listen: "127.0.0.1:${port}", http2: true }
admin: { listen: "127.0.0.1:0" }
services:
  - name: grpc
    servers: [${ports.map((p) => `h2c://127.0.0.1:${p}`).join(', ')}]
`,
  );
  const child = ctx.run(process.execPath, [join(ROOT, 'dist/cli.js'), 'start', '--config', file], { VELOCITY_LOG_LEVEL: 'warn' });
  await waitPort(port, 60_000);
  return { name: 'velocity', port, pid: child.pid, threads: 1 };
}

async function startNginxGrpc(ctx: BenchContext, ports: number[]): Promise<Contender> {
  const port = await freePort();
  const conf = ctx.file(
    'nginx-grpc.conf',
    `daemon off; master_process off; worker_processes 1; pid ${ctx.dir}/nginx-grpc.pid; error_log ${ctx.dir}/nginx-grpc.err;
events { worker_connections 10000; }
http { access_log off;
upstream g { ${ports.map((p) => `server 127.0.0.1:${p};`).join(' ')} keepalive 64; }
server { listen 127.0.0.1:${port} http2; http2_max_concurrent_streams 1000;
  location / { grpc_pass grpc://g; } } }`,
  );
  const child = ctx.run('nginx', ['-c', conf, '-p', ctx.dir]);
  await waitPort(port, 60_000);
  return { name: 'nginx grpc_pass', port, pid: child.pid, threads: 1 };
}

/** One bounded h2load run; latency percentiles from its per-request log. */
function runH2load(ctx: BenchContext, port: number, seconds: number, pid: number | undefined): Promise<Omit<GrpcRow, 'contender'>> {
  const body = ctx.file('call.bin', CALL);
  const log = join(ctx.dir, `h2load-${port}-${Date.now()}.log`);
  const args = [
    '-c',
    '10',
    '-m',
    '10',
    '-D',
    String(seconds),
    '-d',
    body,
    '-H',
    'content-type: application/grpc',
    '-H',
    'te: trailers',
    '--log-file',
    log,
    `http://127.0.0.1:${port}/velocity.bench.Echo/Unary`,
  ];
  return new Promise((resolve, reject) => {
    const cpuBefore = cpuMs(pid);
    const child = spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.once('error', reject);
    child.once('exit', () => {
      clearTimeout(killer);
      const cpu = cpuMs(pid) - cpuBefore;
      const lines = readFileSync(log, 'utf8').trim().split('\n').filter(Boolean);
      // Each line: start time (µs), status, duration (µs).
      const durations = lines.map((l) => Number(l.split('\t')[2]) / 1000).sort((a, b) => a - b);
      const ok = lines.filter((l) => l.split('\t')[1] === '200').length;
      const pct = (p: number) => durations[Math.min(durations.length - 1, Math.floor((durations.length * p) / 100))] ?? 0;
      const finished = /finished in ([\d.]+)(ms|s)/.exec(out);
      const wall = finished ? Number(finished[1]) * (finished[2] === 'ms' ? 0.001 : 1) : seconds;
      resolve({ callsPerSecond: ok / wall, p50: pct(50), p99: pct(99), errors: lines.length - ok, cpuUsPerCall: pid && ok > 0 ? (cpu * 1000) / ok : 0 });
    });
  });
}

/** Runs the scenario; returns one row per contender (medians over rounds). */
export async function grpcScenario(ctx: BenchContext, seconds: number, rounds: number, say: (line: string) => void): Promise<GrpcRow[]> {
  const { ports, pids } = await startBackends(ctx);
  const contenders: Contender[] = [{ name: 'direct', port: ports[0] as number, pid: pids[0], threads: 1 }, await startVelocityGrpc(ctx, ports), await startNginxGrpc(ctx, ports)];
  for (const c of contenders) await runH2load(ctx, c.port, 1, c.pid);
  const runs = new Map<string, Omit<GrpcRow, 'contender'>[]>();
  for (let round = 0; round < rounds; round++) {
    for (const c of contenders) {
      const r = await runH2load(ctx, c.port, seconds, c.pid);
      runs.set(c.name, [...(runs.get(c.name) ?? []), r]);
      say(`gRPC unary · ${c.name}: ${Math.round(r.callsPerSecond)} calls/s, p99 ${r.p99.toFixed(2)} ms, ${r.cpuUsPerCall.toFixed(0)} µs CPU/call`);
    }
  }
  return contenders.map((c) => {
    const list = runs.get(c.name) ?? [];
    const m = (f: (r: Omit<GrpcRow, 'contender'>) => number) => median(list.map(f));
    return {
      contender: c.name,
      callsPerSecond: m((r) => r.callsPerSecond),
      p50: m((r) => r.p50),
      p99: m((r) => r.p99),
      errors: m((r) => r.errors),
      cpuUsPerCall: m((r) => r.cpuUsPerCall),
    };
  });
}

export function formatGrpcTable(rows: GrpcRow[]): string {
  const lines = [['contender', 'calls/s', 'p50 ms', 'p99 ms', 'errors', 'CPU µs/call'].join(' | ')];
  for (const r of rows) lines.push([r.contender, Math.round(r.callsPerSecond), r.p50.toFixed(2), r.p99.toFixed(2), r.errors, r.cpuUsPerCall.toFixed(0)].join(' | '));
  return lines.map((l) => `| ${l} |`).join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' } } });
  requireTools(['nginx', 'h2load']);
  const say = (line: string) => process.stderr.write(`${line}\n`);
  ensureBuilt(say);
  const ctx = new BenchContext();
  try {
    const rows = await grpcScenario(ctx, Number(values.seconds), Number(values.rounds), say);
    console.log(
      `\ngRPC unary: h2load -c 10 -m 10, ${values.seconds} s × ${values.rounds} alternated rounds (medians), 2 node:http2 gRPC servers, ${cpus().length} CPUs, load ${loadavg()[0]?.toFixed(1)}\n`,
    );
    console.log(formatGrpcTable(rows));
    const file = resultsFile('bench-grpc');
    writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), rows }, null, 2));
    console.log(`\nresults: ${file}`);
  } finally {
    ctx.cleanup();
  }
}
