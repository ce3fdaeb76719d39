/**
 * The entry of a data-path worker thread (`workers: N`): a data plane over the
 * shared state, the same guards and metrics as the main thread would run
 * (servingPlane in serving.ts), and its own listeners on the shared ports (SO_REUSEPORT:
 * the kernel spreads connections over the threads). Everything it is told comes
 * from the main thread in order; everything it reports goes back as messages.
 */
import { parentPort, workerData } from 'node:worker_threads';
import pino from 'pino';
import { checkPolicyModules } from '../config/policy-modules.ts';
import type { Config } from '../config/schema/root.ts';
import type { Blocklist } from '../guard/blocklist.ts';
import { TrafficControl } from '../guard/index.ts';
import type { RequestRecord } from '../observe/events.ts';
import { count } from '../observe/metrics.ts';
import { AcmeStorages } from '../proxy/acme/stores.ts';
import { ListenerSet } from '../proxy/listener-set.ts';
import { SharedState } from '../state/shared-state.ts';
import { setLockOwner } from '../state/spin-lock.ts';
import type { Topology } from '../upstream/topology.ts';
import { servingPlane } from './serving.ts';
import { ThreadBlocklist } from './thread-blocklist.ts';
import type { FromWorker, ToWorker, WorkerStart } from './thread-protocol.ts';

/** Records go to the main thread in batches: one message per event-loop turn, or per this many. */
const RECORD_BATCH = 256;

if (!parentPort) throw new Error('worker.ts runs as a worker thread only');
const port = parentPort;
const start = workerData as WorkerStart;
const post = (message: FromWorker) => port.postMessage(message);

// Log lines go to the main thread, which writes them with its own logger (and its destination).
const log = pino({ level: start.logLevel, base: { thread: start.thread }, timestamp: false }, { write: (line: string) => post({ type: 'log', line }) });
// After an uncaught exception the thread's state is unknown (Node says resuming is unsafe): it
// reports and exits, and the pool starts a replacement (its in-flight counts are given back).
process.on('uncaughtException', (err) => {
  log.fatal({ err }, 'uncaught exception on a data-path thread; it exits and is replaced');
  // One turn for the log line to be posted to the main thread.
  setImmediate(() => process.exit(70));
});
process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection on a data-path thread (kept running)'));

setLockOwner(start.thread);
const state = new SharedState(start.buffers);
const blocklist = (list: Blocklist) => new ThreadBlocklist(list, (change) => post({ type: 'blocklist', change }));
const traffic = new TrafficControl(start.topology.config, state.buffers.rateLimits, log, {
  wrapBlocklist: blocklist,
  onRedisDown: () => count(state, 'velocity_state_store_outages_total'),
  onLocalAllow: () => count(state, 'velocity_state_store_fallback_allowed_total'),
});
const plane = servingPlane(state, start.thread, log, traffic, start.policyDir);

let forwardRecords = start.forwardRecords;
let batch: RequestRecord[] = [];
const flushRecords = () => {
  if (batch.length === 0) return;
  post({ type: 'records', records: batch });
  batch = [];
};
plane.addObserver((record) => {
  if (!forwardRecords) return;
  if (batch.push(record) === 1) setImmediate(flushRecords);
  else if (batch.length >= RECORD_BATCH) flushRecords();
});

// Circuit and ejection changes are logged here and observed on the main thread (metrics, dashboard, API).
plane.upstreamChanges.on('change', (change) => post({ type: 'upstream', change }));

/**
 * Every topology arrives structured-cloned, so its config objects are new even when
 * only servers changed. Caches keyed by those objects (upstream TLS options and the
 * https pools built from them, the insecure-TLS warning) would start over on every
 * server change; unless the config itself changed, the running objects are kept, as
 * the main thread does.
 */
let runningConfig: Config = start.topology.config;
function withRunningConfig(topology: Topology, configChanged: boolean): Topology {
  if (configChanged) {
    runningConfig = topology.config;
    return topology;
  }
  const byName = new Map(runningConfig.services.map((s) => [s.name, s]));
  return { ...topology, config: runningConfig, services: topology.services.map((s) => ({ ...s, config: byName.get(s.name) ?? s.config })) };
}

async function configure(config: Config): Promise<void> {
  await checkPolicyModules({ config }, start.policyDir);
}

// ACME storages of this thread's https listeners; files of config_source.etcd resolve as the config does.
const acmeStorages = new AcmeStorages({ log, baseDir: start.policyDir });
let listeners: ListenerSet | undefined;
try {
  await configure(start.topology.config);
  await traffic.ready();
  plane.apply(start.topology);
  listeners = await ListenerSet.open(plane, start.listen, log, { reusePort: true, storages: acmeStorages });
  post({ type: 'ready', bound: listeners.bound, version: plane.version });
} catch (err) {
  post({ type: 'failed', message: (err as Error).message });
  await traffic.close();
  await plane.close();
}

async function handle(message: ToWorker, set: ListenerSet): Promise<void> {
  switch (message.type) {
    case 'topology':
      // A new config brings its guards with it (DataPlane.apply), as on a single thread.
      if (message.configChanged) await configure(message.topology.config);
      plane.apply(withRunningConfig(message.topology, message.configChanged));
      post({ type: 'applied', version: message.topology.version });
      return;
    case 'listeners':
      try {
        await set.reconcile(message.config);
        post({ type: 'reply', id: message.id, bound: set.bound });
      } catch (err) {
        post({ type: 'reply', id: message.id, error: (err as Error).message });
      }
      return;
    case 'forward-records':
      forwardRecords = message.on;
      if (!forwardRecords) batch = [];
      return;
    case 'blocklist': {
      const refused = (traffic.blocklist as ThreadBlocklist).apply(message.change);
      if (refused) log.warn({ change: message.change, reason: refused }, 'a blocklist change from another thread was not copied here');
      return;
    }
    case 'drain':
      plane.drain();
      await set.close(message.deadline);
      acmeStorages.close();
      flushRecords();
      await traffic.close();
      await plane.close();
      post({ type: 'closed' });
      port.close();
      return;
  }
}

if (listeners) {
  const set = listeners;
  // One message at a time, in the order sent: a topology never overtakes the reload before it.
  let chain = Promise.resolve();
  port.on('message', (message: ToWorker) => {
    if (message.type === 'ping') return post({ type: 'reply', id: message.id });
    if (message.type === 'unready') {
      plane.drain();
      return;
    }
    chain = chain.then(() => handle(message, set)).catch((err: unknown) => log.error({ err }, 'a data-path thread failed to apply a change'));
  });
}
