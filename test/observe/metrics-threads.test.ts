/**
 * What the data path counts reaches the shared metric cells exactly: a worker thread's
 * counts by the end of the event-loop turn that made them (the main thread's scrape reads
 * them there), the main thread's own when they are scraped, and none of a slot's old
 * owner on the server or service the slot is given to next.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import type { RequestRecord } from '../../src/observe/events.ts';
import { METRIC_CELLS } from '../../src/observe/metric-table.ts';
import { type MetricsSource, metricsObserver, renderMetrics } from '../../src/observe/metrics.ts';
import { SharedState } from '../../src/state/shared-state.ts';
import { SAMPLE_RECORD } from '../support/sample-record.ts';

const SERVER = SAMPLE_RECORD.server as string;

/** The one service `web` in `serviceSlot` with one server `id` in `serverSlot`. */
function sourceOf(state: SharedState, serviceSlot: number, serverSlot: number, id = SERVER): MetricsSource {
  return { state, serviceNames: () => ['web'], serviceSlot: () => serviceSlot, servers: () => [{ spec: { id, slot: serverSlot } }] };
}

const scrape = (source: MetricsSource) => renderMetrics(source, () => 0);

/** A sample's value in an exposition, by its name and labels as printed. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  assert.ok(line, `${series} in\n${text}`);
  return Number(line.slice(series.length + 1));
}

const requests = (id = SERVER) => `velocity_requests_total{service="web",server="${id}",code="2xx"}`;
const durations = 'velocity_request_duration_seconds_count{service="web"}';
const durationSum = 'velocity_request_duration_seconds_sum{service="web"}';

function records(n: number): RequestRecord[] {
  return Array.from({ length: n }, (_, i) => ({ ...SAMPLE_RECORD, totalMs: 0.25 + (i % 7) * 0.5 }));
}

function counting(state: SharedState, serviceSlot: number, serverSlot: number): (r: RequestRecord) => void {
  return metricsObserver(state, () => ({ slot: serviceSlot, servers: [{ id: SERVER, slot: serverSlot }] }));
}

test("the main thread's counts are all in a scrape, in the turn that counted them and after", async () => {
  const state = new SharedState(undefined, { metricCells: METRIC_CELLS });
  const serviceSlot = state.allocateService();
  const serverSlot = state.allocateServer(0);
  const count = counting(state, serviceSlot, serverSlot);
  const source = sourceOf(state, serviceSlot, serverSlot);
  const first = records(1000);
  for (const r of first) count(r);
  assert.equal(sample(scrape(source), requests()), 1000);
  const second = records(500);
  for (const r of second) count(r);
  await new Promise((done) => setImmediate(done));
  const text = scrape(source);
  assert.equal(sample(text, requests()), 1500);
  assert.equal(sample(text, durations), 1500);
  const micros = [...first, ...second].reduce((sum, r) => sum + Math.round(r.totalMs * 1000), 0);
  assert.equal(sample(text, durationSum), micros / 1e6);
});

test('a slot given to a new server or service starts at zero, whatever this thread counted for the old one', () => {
  const state = new SharedState(undefined, { metricCells: METRIC_CELLS });
  const serviceSlot = state.allocateService();
  const serverSlot = state.allocateServer(0);
  const count = counting(state, serviceSlot, serverSlot);
  for (const r of records(3)) count(r);
  // Removed and replaced in the same turn: the slots are handed out again.
  state.releaseServer(serverSlot);
  state.releaseService(serviceSlot);
  assert.equal(state.allocateServer(0), serverSlot);
  assert.equal(state.allocateService(), serviceSlot);
  const text = scrape(sourceOf(state, serviceSlot, serverSlot, '127.0.0.1:3002'));
  assert.equal(sample(text, requests('127.0.0.1:3002')), 0);
  assert.equal(sample(text, durations), 0);
});

test("a worker thread's counts are in the shared cells by the end of the turn that counted them", async (t) => {
  const state = new SharedState(undefined, { metricCells: METRIC_CELLS });
  const serviceSlot = state.allocateService();
  const serverSlot = state.allocateServer(0);
  const url = (p: string) => new URL(p, import.meta.url).href;
  // The worker counts, then tells once the next turn has begun, and stays alive (nothing is written at its exit).
  const worker = new Worker(
    `const { parentPort, workerData: w } = require('node:worker_threads');
    (async () => {
      const { SharedState } = await import(${JSON.stringify(url('../../src/state/shared-state.ts'))});
      const { metricsObserver } = await import(${JSON.stringify(url('../../src/observe/metrics.ts'))});
      const { SAMPLE_RECORD } = await import(${JSON.stringify(url('../support/sample-record.ts'))});
      const state = new SharedState(w.buffers);
      const count = metricsObserver(state, () => ({ slot: w.serviceSlot, servers: [{ id: SAMPLE_RECORD.server, slot: w.serverSlot }] }));
      for (let i = 0; i < 700; i++) count(SAMPLE_RECORD);
      setImmediate(() => parentPort.postMessage('counted'));
      parentPort.on('message', () => process.exit(0));
    })();`,
    { eval: true, workerData: { buffers: state.buffers, serviceSlot, serverSlot } },
  );
  t.after(() => worker.terminate());
  await new Promise((counted, failed) => {
    worker.once('message', counted);
    worker.once('error', failed);
  });
  const text = scrape(sourceOf(state, serviceSlot, serverSlot));
  worker.postMessage('stop');
  assert.equal(sample(text, requests()), 700);
  assert.equal(sample(text, durations), 700);
});
