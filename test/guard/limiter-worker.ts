/** A thread that takes `attempts` requests from one key of a shared limiter table and reports how many passed. */
import { parentPort, workerData } from 'node:worker_threads';
import { LocalRateLimitTable } from '../../src/guard/rate-limit-store.ts';

const { buffer, attempts, now } = workerData as { buffer: SharedArrayBuffer; attempts: number; now: number };
const table = new LocalRateLimitTable(buffer);
let allowed = 0;
for (let i = 0; i < attempts; i++) if (table.take('shared-key', { intervalMs: 60_000, burst: 1_000 }, now).allowed) allowed++;
parentPort?.postMessage(allowed);
