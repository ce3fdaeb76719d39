/**
 * Where a proxy's latency tail comes from: its own work, or the time it is not running. For nginx, the
 * raw-socket Node floor (bench/raw-floor.ts, on net's I/O and with `--direct` on Velocity's) and Velocity
 * with features on, under wrk, `perf` records
 * the main thread's epoll calls and context switches; a loop turn is the time from one epoll return to
 * the next epoll call. Per turn: the events epoll gave, the time on the CPU, and the time switched out
 * (preempted by wrk, the backends or anything else sharing the cores). A proxy that stalls its loop
 * (a GC pause, a big synchronous flush, a timer's burst of work) shows long on-CPU turns; one whose
 * tail is the machine's shows short, even turns and much time off the CPU. Rounds alternate the
 * contenders; the table gives medians over rounds.
 *
 *   node bench/turns.ts [--seconds 5] [--rounds 3] [--connections 50]
 *
 * Needs perf (Debian linux-perf) with the syscalls tracepoints, and root or perf_event_paranoid ≤ 1.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  type BenchContext,
  type Contender,
  ensureBuilt,
  median,
  perfScript,
  requireTools,
  runProfiling,
  runWrk,
  startDirectFloor,
  startNginxBackends,
  startNginxProxy,
  startRawFloor,
  startVelocity,
  WARMUP_SECONDS,
  withFeatures,
} from './lib.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '50' },
  },
});

/**
 * A stall of the loop's own: a turn on the CPU this long past twice what its events typically cost (the
 * median on-CPU time per event, over all turns). A scavenge is ~0.3 ms, a mark-compact several ms.
 */
const STALL_MS = 1;
const EPOLL_EVENTS = ['epoll_wait', 'epoll_pwait'].flatMap((call) => [`syscalls:sys_enter_${call}`, `syscalls:sys_exit_${call}`]);

interface Turn {
  /** Events the epoll call before it returned. */
  events: number;
  wallMs: number;
  /** Switched out (preempted or waiting) between the epoll return and the next epoll call. */
  offMs: number;
}

/**
 * The turns in `perf script --show-switch-events -F tid,time,event,trace` text of one thread: a turn
 * runs from an epoll exit to the next epoll entry; switches inside it are time off the CPU.
 */
function turnsOf(script: string): Turn[] {
  const turns: Turn[] = [];
  let exitAt: number | undefined;
  let events = 0;
  let offMs = 0;
  let outAt: number | undefined;
  let inEpoll = false;
  for (const line of script.split('\n')) {
    const m = /^\s*\d+\s+([\d.]+):\s+(\S+)(.*)$/.exec(line);
    if (!m) continue;
    const at = Number(m[1]) * 1000;
    const event = m[2] as string;
    const rest = m[3] as string;
    if (event === 'PERF_RECORD_SWITCH') {
      if (rest.includes('OUT')) outAt = at;
      else if (outAt !== undefined) {
        if (!inEpoll) offMs += at - outAt;
        outAt = undefined;
      }
    } else if (event.includes('sys_enter_epoll')) {
      if (exitAt !== undefined) turns.push({ events, wallMs: at - exitAt, offMs });
      inEpoll = true;
    } else if (event.includes('sys_exit_epoll')) {
      inEpoll = false;
      exitAt = at;
      offMs = 0;
      // The return value: the number of events (negative on EINTR, counted as none).
      const ret = /0x([0-9a-f]+)/.exec(rest);
      events = ret ? Math.max(0, Number.parseInt(ret[1] as string, 16) | 0) : 0;
    }
  }
  return turns;
}

const quantile = (sorted: readonly number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? 0;

interface Sample {
  rps: number;
  p99Ms: number;
  tailRatio: number;
  eventsPerTurn: number;
  onCpuP50: number;
  onCpuP99: number;
  onCpuMax: number;
  stallsPer1000: number;
  offCpuShare: number;
}

async function measure(ctx: BenchContext, c: Contender, seconds: number): Promise<Sample> {
  const url = `http://127.0.0.1:${c.port}/`;
  const wrk = ['-t1', `-c${args.connections}`];
  const data = join(ctx.dir, `turns-${c.port}.data`);
  // perf starts a second into the load and stops a second before it ends: only turns under full load.
  const traced = seconds - 2;
  const perf = new Promise<void>((resolve) =>
    setTimeout(() => {
      const p = spawn('perf', ['record', '-q', '-o', data, '--switch-events', '-e', EPOLL_EVENTS.join(','), '-t', String(c.pid), '--', 'sleep', String(traced)], {
        stdio: 'ignore',
      });
      p.once('exit', () => resolve());
    }, 1000),
  );
  const load = await runWrk(url, wrk, seconds, c.pid);
  await perf;
  const script = perfScript(data, ['--show-switch-events', '-F', 'tid,time,event,trace']);
  const turns = turnsOf(script);
  const onCpu = turns.map((t) => t.wallMs - t.offMs).sort((a, b) => a - b);
  const perEvent = median(turns.filter((t) => t.events > 0).map((t) => (t.wallMs - t.offMs) / t.events));
  const stalls = turns.filter((t) => t.wallMs - t.offMs > STALL_MS + 2 * perEvent * t.events).length;
  const wall = turns.reduce((s, t) => s + t.wallMs, 0);
  const requests = load.rps * traced;
  return {
    rps: load.rps,
    p99Ms: load.p99,
    tailRatio: load.p99 / ((Number(args.connections) / load.rps) * 1000),
    eventsPerTurn: median(turns.map((t) => t.events)),
    onCpuP50: quantile(onCpu, 0.5),
    onCpuP99: quantile(onCpu, 0.99),
    onCpuMax: onCpu.at(-1) ?? 0,
    stallsPer1000: (stalls * 1000) / requests,
    offCpuShare: wall ? turns.reduce((s, t) => s + t.offMs, 0) / wall : 0,
  };
}

runProfiling('turns', async (ctx) => {
  requireTools(['nginx', 'wrk', 'perf']);
  ensureBuilt((l) => console.error(l));
  const { upstreams } = await startNginxBackends(ctx);
  const contenders = await Promise.all([
    startNginxProxy(ctx, upstreams),
    startRawFloor(ctx, upstreams),
    startDirectFloor(ctx, upstreams),
    startVelocity(ctx, 'velocity+features', upstreams, withFeatures(ctx)),
  ]);
  const seconds = Number(args.seconds);
  const samples = new Map<string, Sample[]>(contenders.map((c) => [c.name, []]));
  for (const c of contenders) await runWrk(`http://127.0.0.1:${c.port}/`, ['-t1', `-c${args.connections}`], WARMUP_SECONDS, c.pid);
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const c of contenders) {
      const s = await measure(ctx, c, seconds);
      samples.get(c.name)?.push(s);
      console.error(
        `round ${round + 1} ${c.name}: ${Math.round(s.rps)} req/s, p99 ${s.p99Ms.toFixed(2)} ms, on-CPU turn p99 ${s.onCpuP99.toFixed(2)} ms, off the CPU ${(s.offCpuShare * 100).toFixed(0)} %`,
      );
    }
  }
  console.log(`\nGET c=${args.connections}, ${seconds} s × ${args.rounds} rounds (medians); a turn = epoll return → next epoll call, main thread\n`);
  console.log('| contender | req/s | p99 ms | p99 ÷ mean | events/turn | turn on-CPU p50 ms | p99 | max | stalls (> 1 ms past its events) per 1000 req | turn time off the CPU |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const [name, list] of samples) {
    const m = (pick: (s: Sample) => number) => median(list.map(pick));
    console.log(
      `| ${name} | ${Math.round(m((s) => s.rps))} | ${m((s) => s.p99Ms).toFixed(2)} | ${m((s) => s.tailRatio).toFixed(2)} | ${m((s) => s.eventsPerTurn)} | ${m((s) => s.onCpuP50).toFixed(2)} | ${m((s) => s.onCpuP99).toFixed(2)} | ${m((s) => s.onCpuMax).toFixed(1)} | ${m((s) => s.stallsPer1000).toFixed(2)} | ${(m((s) => s.offCpuShare) * 100).toFixed(0)} % |`,
    );
  }
});
