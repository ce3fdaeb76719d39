/** Builds a ring in a worker thread and posts back where each key goes (determinism across threads). */
import { parentPort, workerData } from 'node:worker_threads';
import { HashRing } from '../../src/balancer/hash-ring.ts';
import type { BalancedServer } from '../../src/balancer/policy.ts';

const { servers, keys } = workerData as { servers: BalancedServer[]; keys: string[] };
const ring = new HashRing(servers);
parentPort?.postMessage(keys.map((k) => ring.lookup(k, () => true)?.id));
