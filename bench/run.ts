/**
 * `npm run bench`: Velocity side by side with nginx, HAProxy and node-http-proxy on
 * the same nginx backends, runs alternated (A B C D A B C D …) with wrk, and a table of
 * req/s, p50, p99, errors, RSS and ratios against nginx measured in the same run.
 * Bounded: every wrk run has a fixed duration. `--quick` runs each for 1 s (smoke).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const seconds = quick ? 1 : Number(args[args.indexOf('--seconds') + 1] || 5);
const rounds = quick ? 1 : Number(args[args.indexOf('--rounds') + 1] || 3);
const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'velocity-bench-'));
const children: ChildProcess[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

async function waitPort(port: number, ms = 10_000): Promise<void> {
  const { connect } = await import('node:net');
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on ${port}`);
}

function run(cmd: string, argv: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  children.push(child);
  return child;
}

function rssMb(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : 0;
  } catch {
    return 0;
  }
}

interface Target {
  name: string;
  port: number;
  pid: number | undefined;
}

interface Result {
  scenario: string;
  target: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  rssMb: number;
}

function parseWrk(out: string): { rps: number; p50: number; p99: number; errors: number } {
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? 0);
  const ms = (label: string) => {
    const m = new RegExp(`\\s${label}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
    if (!m) return 0;
    const v = Number(m[1]);
    return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
  };
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = num(/Non-2xx or 3xx responses: (\d+)/);
  const errors = non2xx + (socketErrors ? socketErrors.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  return { rps: num(/Requests\/sec:\s+([\d.]+)/), p50: ms('50'), p99: ms('99'), errors };
}

async function main(): Promise<void> {
  for (const tool of ['nginx', 'wrk']) if (!has(tool)) throw new Error(`${tool} is not installed (apt-get install nginx haproxy wrk)`);
  const backendPorts = await Promise.all([0, 1, 2].map(() => freePort()));
  const nginxBackendConf = join(dir, 'backends.conf');
  writeFileSync(
    nginxBackendConf,
    `worker_processes 1; daemon off; pid ${dir}/backends.pid; error_log ${dir}/backends.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;
${backendPorts.map((p) => `server { listen 127.0.0.1:${p}; location / { return 200 "hello from a backend\\n"; } location /big { alias ${dir}/big.bin; } location /post { return 200 "ok\\n"; } client_max_body_size 1m; }`).join('\n')}
}`,
  );
  writeFileSync(join(dir, 'big.bin'), Buffer.alloc(1024 * 1024, 120));
  // nginx workers run as www-data: they must be able to read the 1 MB file.
  chmodSync(dir, 0o755);
  chmodSync(join(dir, 'big.bin'), 0o644);
  run('nginx', ['-c', nginxBackendConf, '-p', dir]);
  await Promise.all(backendPorts.map((p) => waitPort(p)));
  const upstreams = backendPorts.map((p) => `127.0.0.1:${p}`);

  const targets: Target[] = [{ name: 'direct', port: backendPorts[0] as number, pid: undefined }];
  const nginxPort = await freePort();
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err;
events { worker_connections 10000; }
http { access_log off; keepalive_requests 100000; upstream b { ${upstreams.map((u) => `server ${u};`).join(' ')} keepalive 128; }
server { listen 127.0.0.1:${nginxPort}; client_max_body_size 1m; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } } }`,
  );
  const nginx = run('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir]);
  targets.push({ name: 'nginx', port: nginxPort, pid: nginx.pid });

  if (has('haproxy')) {
    const haproxyPort = await freePort();
    writeFileSync(
      join(dir, 'haproxy.cfg'),
      `global
  nbthread 1
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend f
  bind 127.0.0.1:${haproxyPort}
  default_backend b
backend b
  balance roundrobin
${upstreams.map((u, i) => `  server s${i} ${u}`).join('\n')}
`,
    );
    const haproxy = run('haproxy', ['-f', join(dir, 'haproxy.cfg'), '-db']);
    targets.push({ name: 'haproxy', port: haproxyPort, pid: haproxy.pid });
  }

  const nhpPort = await freePort();
  const nhp = run(process.execPath, [join(root, 'bench/node-http-proxy.ts'), String(nhpPort), ...upstreams.map((u) => `http://${u}`)]);
  targets.push({ name: 'node-http-proxy', port: nhpPort, pid: nhp.pid });

  const velocityConfig = async (name: string, extra: string, service = '') => {
    const port = await freePort();
    const file = join(dir, `${name}.yaml`);
    writeFileSync(
      file,
      `listen: "127.0.0.1:${port}"
admin: { listen: "127.0.0.1:0" }
${extra}
services:
  - name: bench
    servers: [${upstreams.map((u) => `http://${u}`).join(', ')}]
${service}`,
    );
    const child = run(process.execPath, [join(root, 'dist/cli.js'), 'start', '--config', file], { VELOCITY_LOG_LEVEL: 'warn' });
    targets.push({ name, port, pid: child.pid });
  };
  await velocityConfig('velocity', '');
  await velocityConfig(
    'velocity+features',
    `access_log: { output: ${join(dir, 'access.log')} }\nlogs: { store: sqlite, path: ${join(dir, 'logs.db')} }\nrate_limits:\n  - { rate: 1000000/s, burst: 1000000 }`,
    '    health: { type: http, path: /, interval: 1s }\n',
  );
  await velocityConfig('velocity+limiter', 'rate_limits:\n  - { rate: 1000000/s, burst: 1000000 }');
  await velocityConfig('velocity+sqlite-log', `logs: { store: sqlite, path: ${join(dir, 'logs2.db')} }`);
  if (has('redis-server')) {
    const redisPort = await freePort();
    run('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
    await waitPort(redisPort);
    await velocityConfig('velocity+redis-limiter', `state: { store: redis, url: "redis://127.0.0.1:${redisPort}" }\nrate_limits:\n  - { rate: 1000000/s, burst: 1000000 }`);
  }
  const pgUrl = await startPostgres();
  if (pgUrl) await velocityConfig('velocity+postgres-log', `logs: { store: postgres, url: "${pgUrl}" }`);
  await Promise.all(targets.map((t) => waitPort(t.port)));

  const scenarios = [
    { name: 'GET c=50', wrk: ['-t1', '-c50'], path: '/', only: undefined as string[] | undefined },
    { name: 'GET c=256', wrk: ['-t2', '-c256'], path: '/', only: ['direct', 'nginx', 'haproxy', 'node-http-proxy', 'velocity'] },
    { name: 'GET 1MB c=10', wrk: ['-t1', '-c10'], path: '/big', only: ['direct', 'nginx', 'haproxy', 'node-http-proxy', 'velocity'] },
    { name: 'POST 64KB c=20', wrk: ['-t1', '-c20', '-s', join(dir, 'post.lua')], path: '/post', only: ['direct', 'nginx', 'haproxy', 'node-http-proxy', 'velocity'] },
    { name: 'GET c=1', wrk: ['-t1', '-c1'], path: '/', only: ['direct', 'nginx', 'haproxy', 'node-http-proxy', 'velocity'] },
  ];
  writeFileSync(join(dir, 'post.lua'), `wrk.method = "POST"\nwrk.body = string.rep("x", 65536)\nwrk.headers["Content-Type"] = "application/octet-stream"\n`);
  const results: Result[] = [];
  const total = scenarios.reduce((n, s) => n + (s.only ?? targets.map((t) => t.name)).filter((n2) => targets.some((t) => t.name === n2)).length, 0) * rounds;
  let done = 0;
  for (const scenario of scenarios) {
    const list = targets.filter((t) => !scenario.only || scenario.only.includes(t.name));
    // Warm-up, then alternate the contenders round by round.
    for (const t of list) execFileSync('wrk', ['-t1', '-c10', '-d1s', `http://127.0.0.1:${t.port}${scenario.path}`], { stdio: 'ignore' });
    for (let round = 0; round < rounds; round++) {
      for (const t of list) {
        const out = execFileSync('wrk', [...scenario.wrk, `-d${seconds}s`, '--latency', `http://127.0.0.1:${t.port}${scenario.path}`], {
          encoding: 'utf8',
          timeout: (seconds + 20) * 1000,
        });
        results.push({ scenario: scenario.name, target: t.name, ...parseWrk(out), rssMb: rssMb(t.pid) });
        done++;
        process.stderr.write(`\r[${done}/${total}] ${scenario.name} ${t.name}                    `);
      }
    }
  }
  process.stderr.write('\n');

  // Median of the rounds per (scenario, target), ratios against nginx in the same scenario.
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const rows: (Result & { vsNginx: number })[] = [];
  for (const scenario of scenarios) {
    const nginxRps = median(results.filter((r) => r.scenario === scenario.name && r.target === 'nginx').map((r) => r.rps));
    for (const t of targets) {
      const rs = results.filter((r) => r.scenario === scenario.name && r.target === t.name);
      if (rs.length === 0) continue;
      const row = {
        scenario: scenario.name,
        target: t.name,
        rps: median(rs.map((r) => r.rps)),
        p50: median(rs.map((r) => r.p50)),
        p99: median(rs.map((r) => r.p99)),
        errors: rs.reduce((n, r) => n + r.errors, 0),
        rssMb: Math.max(...rs.map((r) => r.rssMb)),
      };
      rows.push({ ...row, vsNginx: nginxRps ? row.rps / nginxRps : 0 });
    }
  }
  const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
  const table = [
    line(['scenario', 'target', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'RSS MB', '× nginx']),
    line(['---', '---', '---:', '---:', '---:', '---:', '---:', '---:']),
    ...rows.map((r) => line([r.scenario, r.target, Math.round(r.rps), r.p50.toFixed(2), r.p99.toFixed(2), r.errors, r.rssMb || '-', r.vsNginx.toFixed(2)])),
  ].join('\n');
  console.log(`\nVelocity benchmark — wrk, ${seconds}s × ${rounds} alternated rounds, medians; nginx backends (3), same machine\n`);
  console.log(table);
  const velocityRps = rows.find((r) => r.scenario === 'GET c=50' && r.target === 'velocity')?.rps ?? 0;
  const byName = (n: string) => rows.find((r) => r.scenario === 'GET c=50' && r.target === n);
  const ratios = {
    'velocity / nginx': (velocityRps / (byName('nginx')?.rps || 1)).toFixed(2),
    'velocity / node-http-proxy': (velocityRps / (byName('node-http-proxy')?.rps || 1)).toFixed(2),
    'added latency at c=1 (ms, p50)': (
      (rows.find((r) => r.scenario === 'GET c=1' && r.target === 'velocity')?.p50 ?? 0) - (rows.find((r) => r.scenario === 'GET c=1' && r.target === 'direct')?.p50 ?? 0)
    ).toFixed(3),
    'limiter cost (local, % req/s)': (100 * (1 - (byName('velocity+limiter')?.rps ?? 0) / (velocityRps || 1))).toFixed(1),
    'limiter cost (redis, % req/s)': (100 * (1 - (byName('velocity+redis-limiter')?.rps ?? 0) / (velocityRps || 1))).toFixed(1),
    'sqlite access-log cost (% req/s)': (100 * (1 - (byName('velocity+sqlite-log')?.rps ?? 0) / (velocityRps || 1))).toFixed(1),
    'postgres access-log cost (% req/s)': byName('velocity+postgres-log') ? (100 * (1 - (byName('velocity+postgres-log')?.rps ?? 0) / (velocityRps || 1))).toFixed(1) : 'not run',
  };
  console.log('');
  for (const [k, v] of Object.entries(ratios)) console.log(`${k}: ${v}`);
  const out = join(root, 'bench/results');
  mkdirSync(out, { recursive: true });
  const file = join(out, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ seconds, rounds, rows, ratios, raw: results }, null, 2));
  console.log(`\nresults: ${file}`);
}

/** A throwaway PostgreSQL cluster (Debian's postgresql package), or undefined when there is none. */
async function startPostgres(): Promise<string | undefined> {
  const bin = ['17', '16', '15', '14'].map((v) => `/usr/lib/postgresql/${v}/bin`).find((b) => has(`${b}/initdb`));
  if (!bin) return undefined;
  const pgDir = join(dir, 'pg');
  mkdirSync(pgDir);
  chmodSync(dir, 0o755);
  execFileSync('chown', ['postgres', pgDir]);
  const port = await freePort();
  const su = (cmd: string) => execFileSync('su', ['postgres', '-s', '/bin/sh', '-c', cmd], { stdio: 'ignore' });
  su(`${bin}/initdb -D ${pgDir}/data -U velocity --auth=trust -E UTF8`);
  su(`${bin}/pg_ctl -D ${pgDir}/data -l ${pgDir}/pg.log -o "-p ${port} -k ${pgDir} -c listen_addresses=127.0.0.1 -c fsync=off" -w start`);
  stopPostgres = () => su(`${bin}/pg_ctl -D ${pgDir}/data -m immediate stop`);
  return `postgres://velocity@127.0.0.1:${port}/postgres`;
}
let stopPostgres: (() => void) | undefined;

/** Stops what the bench started, by PID. SIGTERM first: an nginx master killed outright leaves its workers behind. */
const cleanup = async () => {
  try {
    stopPostgres?.();
  } catch {}
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
  for (const c of running) c.kill('SIGTERM');
  await Promise.race([Promise.all(running.map((c) => new Promise((r) => c.once('exit', r)))), new Promise((r) => setTimeout(r, 3_000))]);
  for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
};
main().then(
  async () => {
    await cleanup();
    process.exit(0);
  },
  async (err: unknown) => {
    console.error(`bench failed: ${(err as Error).message}`);
    await cleanup();
    process.exit(1);
  },
);
