/**
 * What every thread that serves requests sets up the same way — the main thread
 * when `workers: 1`, each worker thread otherwise — so both modes run the same
 * data path with the same features.
 *
 * A feature belongs here when it runs per request and keeps its state in shared
 * memory (guards with the shared rate-limit table, metrics counters). Features
 * that need one owner (access-log sinks, log stores, the autoscaler, embedders'
 * observers) subscribe on the main thread's data plane instead; worker threads
 * forward their request records there in batches.
 */
import type { Config } from '../config/schema/root.ts';
import type { TrafficControl } from '../guard/index.ts';
import { metricsObserver } from '../observe/metrics.ts';
import type { DataPlane } from './data-plane.ts';

/** Guards and client-IP rules from `config` (again on every reload), and the metrics observer (once). */
export function prepareServingPlane(plane: DataPlane, config: Config, traffic: TrafficControl): void {
  traffic.apply(config, plane);
  if (config.metrics.enabled) plane.addObserver(metricsObserver(plane));
}
