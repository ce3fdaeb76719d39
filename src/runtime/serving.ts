/**
 * The data plane of a thread that serves requests — the main thread when
 * `workers: 1`, each worker thread otherwise — built the same way in both modes, so
 * both run the same data path with the same features and apply a reload the same
 * way: every new config reaches DataPlane.apply with its topology, which asks for
 * the config's request rules (client IP, guards) here.
 *
 * A feature belongs here when it runs per request and keeps its state in shared
 * memory (guards with the shared rate-limit table, metrics counters). Features
 * that need one owner (access-log sinks, log stores, the autoscaler, embedders'
 * observers) subscribe on the main thread's data plane instead; worker threads
 * forward their request records there in batches.
 */
import type { TrafficControl } from '../guard/index.ts';
import type { Logger } from '../observe/logger.ts';
import { metricsObserver } from '../observe/metrics.ts';
import type { SharedState } from '../state/shared-state.ts';
import { policyLoader } from '../upstream/service.ts';
import { DataPlane } from './data-plane.ts';

export function servingPlane(state: SharedState, thread: number, log: Logger, traffic: TrafficControl, policyDir: string): DataPlane {
  let counting = false;
  const plane = new DataPlane(state, thread, log, {
    baseDir: policyDir,
    loadPolicy: policyLoader(policyDir, (service, message) => log.warn({ service }, message)),
    rules: (config) => {
      // `metrics.enabled` follows reloads too.
      counting = config.metrics.enabled;
      return traffic.rules(config);
    },
  });
  const countRecord = metricsObserver(state, (name) => plane.service(name));
  plane.addObserver((record) => {
    if (counting) countRecord(record);
  });
  return plane;
}
