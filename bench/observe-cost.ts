/**
 * CPU per request of what observes it, in process: each request starts its trace
 * (ids, the traceparent of one attempt), and its record goes through the metrics
 * observer (shared-memory counters and histograms) and the JSON access log to a
 * file, in bursts of `--burst` records per event-loop turn as the data
 * path hands them over. A whole proxy run moves too much on a shared machine to
 * show a change of a few per cent of its CPU; this isolates the observer path.
 * Two builds alternate round by round in one process: this checkout's `dist/`
 * (B) and `--base DIR`'s (A); CPU is utime+stime of the process, medians per record.
 *
 *   node bench/observe-cost.ts [--base DIR] [--records 200000] [--rounds 7] [--burst 25]
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { RequestRecord } from '../src/observe/events.ts';
import { SAMPLE_RECORD } from '../test/support/sample-record.ts';
import { ensureBuilt, median } from './lib.ts';

const { values: args } = parseArgs({
  options: {
    base: { type: 'string' },
    records: { type: 'string', default: '200000' },
    rounds: { type: 'string', default: '7' },
    burst: { type: 'string', default: '25' },
  },
});

interface Build {
  name: string;
  /** Runs `records` through the observers; resolves when the access log holds all of them. */
  run(records: readonly RequestRecord[], burst: number, file: string): Promise<void>;
}

async function load(name: string, root: string): Promise<Build> {
  const dist = (p: string) => import(pathToFileURL(join(root, 'dist', p)).href);
  const [{ AccessLogSink, formatAccessLine }, { metricsObserver }, { SharedState }, { METRIC_CELLS }, { Tracer }] = await Promise.all([
    dist('observe/access-log.js'),
    dist('observe/metrics.js'),
    dist('state/shared-state.js'),
    dist('observe/metric-table.js'),
    dist('observe/tracing.js'),
  ]);
  // No exporter: what every request pays when tracing is not exported (the default).
  const tracer = new Tracer(undefined, {});
  const headers = { host: '127.0.0.1:8080', 'user-agent': 'wrk' };
  const state = new SharedState(undefined, { metricCells: METRIC_CELLS });
  const service = { slot: 1, servers: [{ id: '127.0.0.1:3001', slot: 1 }] };
  const count: (r: RequestRecord) => void = metricsObserver(state, () => service);
  return {
    name,
    async run(records, burst, file) {
      const sink = new AccessLogSink(file, (err: Error) => {
        throw err;
      });
      for (let i = 0; i < records.length; i += burst) {
        for (let j = i; j < i + burst && j < records.length; j++) {
          const r = records[j] as RequestRecord;
          const trace = tracer.start(headers);
          r.traceId = trace.traceId;
          r.spanId = trace.spanId;
          if (trace.traceparent(trace.startAttempt()).length !== 55) throw new Error('a traceparent is 55 characters');
          count(r);
          // Builds before the sink wrote records itself formatted them as strings first.
          if (sink.writeRecord) sink.writeRecord(r, 'json');
          else sink.write(formatAccessLine(r, 'json'));
          // A record dies with its request, and its ids with it. Kept on these long-lived records, every
          // round's 400k ids (and the hex runs they are slices of) survived the scavenges and were
          // promoted: ~25 MB copied a round, ~1 µs a record of garbage collection no proxy pays.
          r.traceId = undefined;
          r.spanId = undefined;
        }
        await new Promise((done) => setImmediate(done));
      }
      sink.close();
    },
  };
}

/**
 * Records as the data path makes them: a fresh request id, the time, durations as
 * differences of performance.now() (doubles of 15–17 digits, each one new, as live),
 * host, path and user agent sliced from a latin1 copy of the request's head (as the
 * HTTP/1.1 parser hands them over), the client address one of 50 connections'.
 */
function makeRecords(n: number): RequestRecord[] {
  const out: RequestRecord[] = [];
  const start = Date.now();
  const now = performance.now();
  const ms = (low: number) => now + low + Math.random() * 0.5 - now;
  const clients = Array.from({ length: 50 }, () => ['127.0.0.1'].join(''));
  for (let i = 0; i < n; i++) {
    const head = Buffer.from(`GET /api/items/${i % 100}?page=2 HTTP/1.1\r\nHost: example.test:8080\r\nUser-Agent: wrk/4.2.0 (Linux x86_64)\r\n\r\n`, 'latin1').toString('latin1');
    const field = (name: string) => {
      const from = head.indexOf(`${name}: `) + name.length + 2;
      return head.slice(from, head.indexOf('\r', from));
    };
    out.push({
      ...SAMPLE_RECORD,
      time: start + Math.floor(i / 12),
      requestId: randomUUID(),
      clientIp: clients[i % clients.length] as string,
      host: field('Host'),
      path: head.slice(4, head.indexOf(' ', 4)),
      upstreamFirstByteMs: ms(0.2),
      upstreamMs: ms(0.3),
      totalMs: ms(0.4),
      userAgent: field('User-Agent'),
    });
  }
  return out;
}

ensureBuilt((line) => process.stderr.write(`${line}\n`));
const builds = [await load('B (this tree)', resolve(import.meta.dirname, '..'))];
if (args.base) builds.unshift(await load('A (base)', resolve(args.base)));
const records = makeRecords(Number(args.records));
const burst = Number(args.burst);
const dir = mkdtempSync(join(tmpdir(), 'observe-cost-'));
const perRecord = new Map<string, number[]>(builds.map((b) => [b.name, []]));
try {
  // One unmeasured pass each: compiled code, not the interpreter, is what serves traffic.
  for (const b of builds) await b.run(records.slice(0, 20_000), burst, join(dir, 'warm.log'));
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const b of round % 2 === 0 ? builds : [...builds].reverse()) {
      const file = join(dir, `${round}-${b.name[0]}.log`);
      const before = process.cpuUsage();
      await b.run(records, burst, file);
      const used = process.cpuUsage(before);
      const us = (used.user + used.system) / records.length;
      perRecord.get(b.name)?.push(us);
      process.stderr.write(
        `round ${round + 1} ${b.name}: ${us.toFixed(3)} µs/record (user ${(used.user / records.length).toFixed(3)}, system ${(used.system / records.length).toFixed(3)}), ${statSync(file).size} bytes\n`,
      );
      rmSync(file);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log('| build | CPU µs per record (median) |');
console.log('|---|---:|');
for (const [name, list] of perRecord) console.log(`| ${name} | ${median(list).toFixed(3)} |`);
const [a, b] = [...perRecord.values()];
if (a && b) console.log(`\nB÷A per round, median: ${median(a.map((x, i) => (b[i] as number) / x)).toFixed(3)}`);
