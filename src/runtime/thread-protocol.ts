/** The messages between the main thread and the data-path worker threads. Plain data only. */
import type { Config } from '../config/schema/root.ts';
import type { RequestRecord } from '../observe/events.ts';
import type { BoundListener } from '../proxy/listener-set.ts';
import type { SharedStateBuffers } from '../state/shared-state.ts';
import type { UpstreamChange } from '../upstream/outcome.ts';
import type { Topology } from '../upstream/topology.ts';
import type { BlocklistChange } from './thread-blocklist.ts';

/** `workerData` of a data-path thread. */
export interface WorkerStart {
  buffers: SharedStateBuffers;
  /** This thread's index in shared state (1…N; 0 is the main thread). */
  thread: number;
  topology: Topology;
  /** The config for listeners: `topology.config` with every port 0 resolved, so all threads bind the same ports. */
  listen: Config;
  /** Where custom policy modules are resolved from. */
  policyDir: string;
  logLevel: string;
  /** Whether the main thread wants request records now. */
  forwardRecords: boolean;
}

export type ToWorker =
  /** `configChanged`: guards and policy modules follow `topology.config` too (a reload). */
  | { type: 'topology'; topology: Topology; configChanged: boolean }
  | { type: 'listeners'; id: number; config: Config }
  | { type: 'forward-records'; on: boolean }
  | { type: 'blocklist'; change: BlocklistChange }
  | { type: 'drain'; deadline: number }
  /** Shutting down: readiness probes fail from now on, while requests are still served. */
  | { type: 'unready' }
  /** Liveness: answered with a `reply` straight from the event loop, not queued behind changes. */
  | { type: 'ping'; id: number };

export type FromWorker =
  | { type: 'ready'; bound: BoundListener[]; version: number }
  | { type: 'failed'; message: string }
  | { type: 'applied'; version: number }
  | { type: 'reply'; id: number; bound?: BoundListener[]; error?: string }
  | { type: 'records'; records: RequestRecord[] }
  /** A circuit or ejection change made on the worker, for the main thread's observers. */
  | { type: 'upstream'; change: UpstreamChange }
  | { type: 'log'; line: string }
  | { type: 'blocklist'; change: BlocklistChange }
  | { type: 'closed' };
