/**
 * Memory and latency under slow clients (#22): Velocity beside nginx (1 worker,
 * `proxy_buffering off`) on the same nginx backends. For each kind of slow
 * connection — idle, slowloris (a header line every second), slow body (a body
 * byte every second), slow read (a 1 MB response read one socket chunk a second)
 * — N connections are held for a few seconds while the proxy's RSS is sampled
 * and normal clients keep sending requests; the table gives the peak RSS, the
 * memory per slow connection and the normal clients' answers and p99.
 *
 *   node bench/slow-clients.ts [--connections 1000] [--hold 8] [--kinds idle,slowloris,slowbody,slowread]
 *
 * Bounded: every phase lasts `hold` seconds, each connection is destroyed at its end,
 * everything runs on loopback, and every process is stopped by PID.
 * Not a test: numbers depend on the machine; the pass/fail side is in test/hardening/slow-readers.test.ts.
 */
import { connect, type Socket } from 'node:net';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { BenchContext, type Contender, ensureBuilt, rssMb, startNginxBackends, startNginxProxy, startVelocity } from './lib.ts';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '1000' },
    hold: { type: 'string', default: '8' },
    kinds: { type: 'string', default: 'idle,slowloris,slowbody,slowread' },
    only: { type: 'string' },
  },
});
const N = Number(values.connections);
const HOLD_MS = Number(values.hold) * 1000;
const KINDS = String(values.kinds).split(',') as Kind[];

type Kind = 'idle' | 'slowloris' | 'slowbody' | 'slowread';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One slow connection of `kind`; returns a function that ends it. */
function slowConnection(port: number, kind: Kind): () => void {
  const socket: Socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  socket.on('connect', () => {
    if (kind === 'slowloris') {
      socket.write('GET / HTTP/1.1\r\nHost: a\r\n');
      let n = 0;
      timer = setInterval(() => socket.write(`X-Slow-${n++}: a\r\n`), 1_000);
    } else if (kind === 'slowbody') {
      socket.write('POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n');
      timer = setInterval(() => socket.write('x'), 1_000);
    } else if (kind === 'slowread') {
      socket.write('GET /big HTTP/1.1\r\nHost: a\r\n\r\n');
      // Read one socket chunk a second: the proxy must hold back the rest.
      socket.pause();
      socket.on('data', () => socket.pause());
      timer = setInterval(() => socket.resume(), 1_000);
    }
  });
  return () => {
    clearInterval(timer);
    socket.destroy();
  };
}

interface Probe {
  sent: number;
  ok: number;
  p99: number;
}

/** Normal clients: 10 in a loop of GET / until `until`; their answers and p99 (ms). */
async function probe(port: number, until: number): Promise<Probe> {
  const agent = new Agent({ connections: 10, keepAliveTimeout: 2_000, headersTimeout: 10_000, bodyTimeout: 10_000 });
  const latencies: number[] = [];
  let sent = 0;
  let ok = 0;
  const loop = async () => {
    while (Date.now() < until) {
      sent++;
      const started = performance.now();
      try {
        const res = await request(`http://127.0.0.1:${port}/`, { dispatcher: agent });
        await res.body.dump();
        if (res.statusCode === 200) ok++;
      } catch {}
      latencies.push(performance.now() - started);
      await sleep(20);
    }
  };
  await Promise.all(Array.from({ length: 10 }, loop));
  await agent.close();
  latencies.sort((a, b) => a - b);
  return { sent, ok, p99: latencies[Math.floor(latencies.length * 0.99)] ?? 0 };
}

interface Row {
  contender: string;
  kind: Kind | 'none';
  baseMb: number;
  peakMb: number;
  perConnKb: number;
  probe: Probe;
}

async function phase(c: Contender, kind: Kind | 'none'): Promise<Row> {
  // Warm up so the base is the running size, not the start-up size.
  await probe(c.port, Date.now() + 1_000);
  await sleep(1_000);
  const baseMb = rssMb(c.pid);
  const ends: (() => void)[] = [];
  if (kind !== 'none') {
    for (let i = 0; i < N; i++) {
      ends.push(slowConnection(c.port, kind));
      if (i % 100 === 99) await sleep(50);
    }
  }
  let peakMb = baseMb;
  const sampler = setInterval(() => {
    peakMb = Math.max(peakMb, rssMb(c.pid));
  }, 200);
  const probed = await probe(c.port, Date.now() + HOLD_MS);
  clearInterval(sampler);
  peakMb = Math.max(peakMb, rssMb(c.pid));
  for (const end of ends) end();
  await sleep(2_000);
  return { contender: c.name, kind, baseMb, peakMb, perConnKb: kind === 'none' ? 0 : ((peakMb - baseMb) * 1024) / N, probe: probed };
}

const ctx = new BenchContext();
try {
  ensureBuilt((line) => process.stdout.write(`${line}\n`));
  const { upstreams } = await startNginxBackends(ctx, 3);
  const contenders: Contender[] = [];
  if (values.only !== 'nginx') contenders.push(await startVelocity(ctx, 'velocity', upstreams, { extra: 'client: { max_connections: 0 }', startMs: 60_000 }));
  if (values.only !== 'velocity') contenders.push(await startNginxProxy(ctx, upstreams));
  const rows: Row[] = [];
  for (const c of contenders) {
    rows.push(await phase(c, 'none'));
    for (const kind of KINDS) rows.push(await phase(c, kind));
  }
  process.stdout.write(`\nslow clients: ${N} connections per kind, held ${HOLD_MS / 1000} s; normal clients: 10 in a loop; load ${loadavg()[0]?.toFixed(1)}\n`);
  process.stdout.write('| contender | slow kind | base RSS MB | peak RSS MB | KB per slow conn | normal answered | normal p99 ms |\n|---|---|---|---|---|---|---|\n');
  for (const r of rows) {
    process.stdout.write(
      `| ${r.contender} | ${r.kind} | ${r.baseMb.toFixed(1)} | ${r.peakMb.toFixed(1)} | ${r.perConnKb.toFixed(1)} | ${r.probe.ok}/${r.probe.sent} | ${r.probe.p99.toFixed(0)} |\n`,
    );
  }
} finally {
  ctx.cleanup();
}
