/**
 * What Velocity's HTTP/1.1 server costs: CPU µs per request (user + system of
 * the serving process ÷ requests, split) of node:http and of src/proxy/http1
 * each answering a 21-byte body by itself, under `wrk -t1 -c50`, in alternated
 * rounds; medians printed. `node bench/http1-cost.ts [seconds=5] [rounds=3]`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BenchContext, freePort, median, ROOT, requireTools, runWrk, waitPort } from './lib.ts';

const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 3);
requireTools(['wrk']);
const ctx = new BenchContext();

function cpuSplit(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(f[11]) * 10, system: Number(f[12]) * 10 };
}

const contenders = [
  { name: 'node:http', script: 'node-hello.ts' },
  { name: 'velocity http1', script: 'http1-hello.ts' },
];
const started = [];
for (const c of contenders) {
  const port = await freePort();
  const child = ctx.run(process.execPath, [join(ROOT, 'bench', c.script), String(port)]);
  await waitPort(port);
  started.push({ ...c, port, pid: child.pid as number, samples: [] as { rps: number; total: number; user: number; system: number }[] });
}
try {
  for (let r = 0; r < rounds; r++) {
    for (const c of started) {
      const before = cpuSplit(c.pid);
      const result = await runWrk(`http://127.0.0.1:${c.port}/`, ['-t1', '-c50'], seconds, c.pid);
      const after = cpuSplit(c.pid);
      const per = (ms: number) => (ms * 1000) / result.requests;
      c.samples.push({
        rps: result.rps,
        total: per(after.user - before.user + after.system - before.system),
        user: per(after.user - before.user),
        system: per(after.system - before.system),
      });
    }
  }
  console.log('server            req/s   CPU µs/req  (user / system)');
  for (const c of started) {
    const m = (k: 'rps' | 'total' | 'user' | 'system') => median(c.samples.map((s) => s[k]));
    console.log(`${c.name.padEnd(16)} ${m('rps').toFixed(0).padStart(6)}   ${m('total').toFixed(1).padStart(6)}      (${m('user').toFixed(1)} / ${m('system').toFixed(1)})`);
  }
} finally {
  ctx.cleanup();
}
