/**
 * A running Velocity: control plane, data plane and listeners, with reload and
 * graceful close. This is what `start()` returns and what the CLI drives.
 */

import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import { autoscaleRoutes } from '../admin/api/autoscale.ts';
import { blocklistRoutes } from '../admin/api/blocklist.ts';
import { certificatesRoutes } from '../admin/api/certificates.ts';
import { configRoutes } from '../admin/api/config.ts';
import { fleetRoutes, fleetServerChanges } from '../admin/api/fleet.ts';
import { probeRoutes } from '../admin/api/probes.ts';
import { servicesRoutes } from '../admin/api/services.ts';
import { dashboardRoutes } from '../admin/dashboard/index.ts';
import { openApiRoute } from '../admin/openapi.ts';
import { AdminRouter } from '../admin/router.ts';
import { type AdminServer, startAdminServer } from '../admin/server.ts';
import { EtcdConfigStore } from '../config/etcd-source.ts';
import { checkSharedCandidate, loadConfigFile } from '../config/load.ts';
import { checkPolicyModules } from '../config/policy-modules.ts';
import type { ReloadResult } from '../config/reload-result.ts';
import type { Config } from '../config/schema/root.ts';
import type { ListenAddress } from '../config-fields.ts';
import { Discovery } from '../discovery/index.ts';
import { ConfigError } from '../errors.ts';
import { FleetBlocklist } from '../fleet/blocklist.ts';
import { FleetMember, fleetMetrics } from '../fleet/member.ts';
import { SharedConfigEditor } from '../fleet/shared-edits.ts';
import type { Blocklist } from '../guard/blocklist.ts';
import { TrafficControl } from '../guard/index.ts';
import type { RequestObserver } from '../observe/events.ts';
import { createLogger, type Logger } from '../observe/logger.ts';
import { METRIC_CELLS } from '../observe/metric-table.ts';
import { count } from '../observe/metrics.ts';
import { AutomaticHttps } from '../proxy/acme/automatic-https.ts';
import { AcmeStorages } from '../proxy/acme/stores.ts';
import { type BoundListener, ListenerSet, listenerFieldsNeedingRestart } from '../proxy/listener-set.ts';
import type { AdminState } from '../state/server-cells.ts';
import { SharedState } from '../state/shared-state.ts';
import { ControlPlane, ServerChangeError, serverIdFor } from '../upstream/control-plane.ts';
import { VERSION } from '../version.ts';
import { watchConfigFile } from './config-watch.ts';
import { DataPlane } from './data-plane.ts';
import { Observability } from './observability.ts';
import { assertPortsFree } from './ports.ts';
import { applySubsystems, changedFields, restartOnly, type Subsystem } from './reload.ts';
import { servingPlane } from './serving.ts';
import { ThreadBlocklist } from './thread-blocklist.ts';
import { ThreadPool, type ThreadsInfo } from './threads.ts';

export interface StartOptions {
  logger?: Logger;
  /** The file the config came from: reload() without arguments reads it again. */
  configFile?: string;
  /** Reload when the config file changes (default: true when started from a file). */
  watchConfig?: boolean;
  /**
   * Share ports that another Velocity holds (SO_REUSEPORT) instead of refusing them: the new
   * process of a takeover listens beside the old one, which then drains.
   */
  sharePorts?: boolean;
}

export type { ReloadResult };

export interface Velocity {
  /** The first listener's bound address (port resolved when 0 was asked): a plain `listen` one when there is one. */
  readonly address: ListenAddress;
  readonly addresses: readonly ListenAddress[];
  /** Every open listener with its kind (http, https, redirect, tcp), in config order. */
  readonly listeners: readonly BoundListener[];
  /** The admin listener's bound address, when admin is enabled. */
  readonly adminAddress: ListenAddress | undefined;
  /** Where features register admin API routes. */
  readonly admin: AdminRouter;
  readonly config: Config;
  readonly controlPlane: ControlPlane;
  /**
   * The main thread's data plane. With `workers: 1` it serves every request; with
   * more, worker threads serve and this one is a view of the same shared state
   * (services, servers, queues) whose observers receive the workers' records.
   */
  readonly dataPlane: DataPlane;
  /** The data-path worker threads when `workers` is above 1 (or `auto` on a multi-core machine). */
  readonly threads: ThreadsInfo | undefined;
  readonly lastReload: ReloadResult | undefined;
  /** Applies a new config (object, file path, or the original file again). A bad one leaves the old running. */
  reload(next?: Config | string): Promise<ReloadResult>;
  /** The dynamic blocklist (also at /api/v1/blocklist): add(cidr, ttlMs, reason), remove(cidr), list(). */
  readonly blocklist: Blocklist;
  /** Reopens the access-log file (log rotation; SIGUSR1 and SIGHUP do this). */
  reopenLogs(): void;
  /** Adds an observer of finished requests (access log, metrics). */
  observe(observer: RequestObserver): () => void;
  /** Stops accepting, lets in-flight requests finish until `shutdown_timeout`, then closes. */
  close(): Promise<void>;
}

export async function start(input: Config | string, options: StartOptions = {}): Promise<Velocity> {
  const log = options.logger ?? createLogger();
  const configFile = typeof input === 'string' ? input : options.configFile;
  let config = typeof input === 'string' ? (await loadConfigFile(input)).config : input;
  // Custom policy modules and process commands resolve against the config file's folder, per instance.
  const baseDir = configFile ? dirname(configFile) : process.cwd();
  if (typeof input !== 'string') await checkPolicyModules({ config }, baseDir);

  // One thread serves in this thread; more run the data path on worker threads (thread 1…N in shared
  // state) while this one keeps the control plane, health checks, the admin API and the log sinks.
  const threadCount = config.workers === 'auto' ? availableParallelism() : config.workers;
  const threaded = threadCount > 1;
  const state = new SharedState(undefined, { rateLimitSlots: config.state.local_table_size, threads: threadCount + 1, metricCells: METRIC_CELLS });
  let threads: ThreadPool | undefined;
  // Fleet mode (config_source.etcd): reloads read the shared config through one etcd client.
  const fleetSource = config.config_source?.etcd;
  if (fleetSource && !configFile) throw new Error('config_source needs Velocity started from a config file (the file is re-read with the shared config on each change)');
  const etcd = fleetSource && configFile ? new EtcdConfigStore(fleetSource, dirname(configFile)) : undefined;
  let fleet: FleetMember | undefined;
  // Each thread keeps its own blocklist object; in threaded mode changes travel between them as messages.
  let threadBlocklist: ThreadBlocklist | undefined;
  // In a fleet, an in-memory list takes operator blocks from etcd too (a Redis one is shared already).
  let fleetBlocklist: FleetBlocklist | undefined;
  const wrapBlocklist = (list: Blocklist): Blocklist => {
    threadBlocklist = threaded ? new ThreadBlocklist(list, (change) => threads?.relayBlocklist(change)) : undefined;
    const local = threadBlocklist ?? list;
    fleetBlocklist = etcd && config.state.store !== 'redis' ? new FleetBlocklist(etcd, local, log) : undefined;
    return fleetBlocklist ?? local;
  };
  const traffic = new TrafficControl(config, state.buffers.rateLimits, log, {
    wrapBlocklist,
    onRedisDown: () => count(state, 'velocity_state_store_outages_total'),
    onLocalAllow: () => count(state, 'velocity_state_store_fallback_allowed_total'),
  });
  const control = new ControlPlane(state, log);
  // With worker threads this plane serves nothing: it is the main thread's view of the shared state.
  const plane = threaded ? new DataPlane(state, 0, log, { baseDir, serves: false }) : servingPlane(state, 0, log, traffic, baseDir);
  control.on('topology', (t) => plane.apply(t));
  control.applyConfig(config);

  let listeners: ListenerSet | ThreadPool | undefined;
  /** Resolves once the latest topology runs on every data-path thread. */
  const applied = () => threads?.applied() ?? Promise.resolve();
  const admin = new AdminRouter(applied);
  let adminServer: AdminServer | undefined;
  const discovery = new Discovery(control, log, baseDir, (fn) => plane.addObserver(fn));
  let observability: Observability | undefined;
  /** Everything after the listeners, in order: backends Velocity runs stop after the requests they served. */
  // Certificates from ACME CAs: ordered here, served by every data-path thread from storage.
  // Its storages in Redis or etcd share this thread's connections (etcd: the instance's own client).
  const acmeStorages = new AcmeStorages({ log, baseDir, etcd });
  const automaticHttps = new AutomaticHttps(log, acmeStorages);
  const stopTheRest = async () => {
    // Leaving the fleet first: its record goes at once rather than at the lease's expiry.
    await fleet?.close();
    etcd?.close();
    automaticHttps.close();
    acmeStorages.close();
    await adminServer?.close();
    await discovery.stop();
    await observability?.close();
    await traffic.close();
    await control.close();
    await plane.close();
  };
  try {
    observability = await Observability.start(config, plane, control, admin, log, { ...automaticHttps.metrics, ...fleetMetrics(() => fleet) });
    admin.add(...blocklistRoutes(traffic.blocklist));
    // With a Redis state store, the first requests already count together (bounded wait).
    await traffic.ready();
    if (!options.sharePorts) await assertPortsFree(config);
    listeners = threaded
      ? await ThreadPool.start({ count: threadCount, state, control, log, policyDir: baseDir, records: plane, blocklist: threadBlocklist as ThreadBlocklist }, config)
      : await ListenerSet.open(plane, config, log, { reusePort: true, onDemand: automaticHttps.onDemand, storages: acmeStorages });
    // Orders start once the listeners that answer the CA's challenges are open.
    automaticHttps.apply(config);
    threads = listeners instanceof ThreadPool ? listeners : undefined;
    if (config.admin.enabled) adminServer = await startAdminServer(config.admin.listen, () => config.admin.token, admin, log);
    await discovery.apply(config);
    admin.add(...autoscaleRoutes(() => discovery));
  } catch (err) {
    await listeners?.close(Date.now());
    await stopTheRest();
    throw err;
  }
  const listenerSet = listeners;
  const observers = observability;
  /**
   * What a reload goes through, in order. The first two may refuse a config (a port in
   * use, an access-log file that cannot be opened) before anything else changed.
   */
  const subsystems: Subsystem[] = [
    {
      name: 'listeners',
      // `state`: ACME storage in Redis reads through the state section's connection settings.
      sections: ['listen', 'listeners', 'workers', 'client', 'state'],
      apply: async (next, previous) => {
        await listenerSet.reconcile(next);
        return [...changedFields(next, previous, { workers: (c) => c.workers }), ...listenerFieldsNeedingRestart(next, previous)];
      },
    },
    ...observers.subsystems(),
    // New acme blocks start ordering; names follow the services' hosts.
    { name: 'automatic https', sections: ['listeners', 'services', 'state'], apply: (next) => void automaticHttps.apply(next) },
    {
      // Guards and client-IP rules, tracing and the listener probes go with the topology to every serving thread (DataPlane.apply).
      name: 'services',
      sections: ['services', 'defaults', 'trusted_proxies', 'ip_filter', 'rate_limits', 'tracing', 'probes'],
      apply: async (next) => {
        control.applyConfig(next);
        await applied();
        return undefined;
      },
    },
    // Where rate-limit counters and the blocklist live: the connections are made at start.
    restartOnly('state store', ['state'], { state: (c) => c.state }),
    { name: 'discovery', sections: ['docker', 'services'], apply: (next) => discovery.apply(next).then(() => undefined) },
    // The admin token is read on every request; the listener itself stays.
    restartOnly('admin', ['admin'], { 'admin.enabled': (c) => c.admin.enabled, 'admin.listen': (c) => c.admin.listen }),
    // The etcd client, lease and watch are made once, at start.
    restartOnly('fleet', ['config_source'], { config_source: (c) => c.config_source }),
    // Read from the running config when shutting down.
    { name: 'shutdown', sections: ['shutdown_timeout'], apply: () => undefined },
  ];
  let stopWatching: (() => void) | undefined;
  log.info(
    {
      listen: listenerSet.bound.map((l) => formatAddress(l.address)),
      listeners: listenerSet.bound.map((l) => ({ kind: l.kind, address: formatAddress(l.address), ...(l.service ? { service: l.service } : {}) })),
      admin: adminServer ? formatAddress(adminServer.address) : 'disabled',
      threads: threadCount,
      services: config.services.map((s) => ({ name: s.name, hosts: s.hosts, paths: s.paths, policy: s.policy.name, servers: s.servers.map((x) => x.url) })),
    },
    'velocity is listening',
  );

  let lastReload: ReloadResult | undefined;
  let closing: Promise<void> | undefined;
  let reloadChain: Promise<unknown> = Promise.resolve();

  const doReload = async (next?: Config | string): Promise<ReloadResult> => {
    const at = new Date().toISOString();
    try {
      const source = next ?? configFile;
      if (source === undefined) throw new Error('no config file to reload from');
      const loaded = typeof source === 'string' ? await loadConfigFile(source, process.env, etcd) : undefined;
      const candidate = loaded?.config ?? (source as Config);
      if (typeof source !== 'string') await checkPolicyModules({ config: candidate }, baseDir);
      const previous = config;
      const restart = await applySubsystems(subsystems, candidate, previous);
      config = candidate;
      lastReload = {
        ok: true,
        at,
        version: control.current.version,
        ...(loaded?.revision !== undefined ? { revision: loaded.revision } : {}),
        ...(restart.length > 0 ? { restart_required: restart } : {}),
      };
      count(state, 'velocity_config_reloads_total', { value: 'success' });
      if (restart.length > 0) log.warn({ version: lastReload.version, restart_required: restart }, 'config reloaded; these changes take effect on restart');
      else log.info({ version: lastReload.version }, 'config reloaded');
    } catch (err) {
      const errors = err instanceof ConfigError ? err.problems.map((p) => `${p.file}:${p.line}:${p.column}: ${p.path}: ${p.message}`) : [(err as Error).message];
      lastReload = { ok: false, at, version: control.current.version, errors, ...(err instanceof ConfigError && err.revision !== undefined ? { revision: err.revision } : {}) };
      count(state, 'velocity_config_reloads_total', { value: 'failure' });
      log.error({ errors }, 'config reload rejected; the running config is unchanged');
    }
    fleet?.reloaded(lastReload);
    return lastReload;
  };

  if (etcd && fleetSource) {
    const facts = () => {
      const servers = control.serviceNames().flatMap((name) => control.servers(name).map((s) => state.server(s.spec.slot)));
      return {
        listen: listenerSet.bound.map((l) => formatAddress(l.address)),
        admin: adminServer ? formatAddress(adminServer.address) : undefined,
        threads: threadCount,
        draining: closing !== undefined,
        requests: servers.reduce((n, s) => n + s.requests, 0),
        errors: servers.reduce((n, s) => n + s.failures, 0),
      };
    };
    const hasServer = (service: string, server: string) =>
      control.serviceNames().includes(service) && control.servers(service).some((s) => s.spec.id === server && s.removeBy === undefined);
    const setServerState = (service: string, server: string, wanted: AdminState) => {
      try {
        control.setAdminState(service, server, wanted);
      } catch (err) {
        // A server this instance does not run (yet) takes the state when it is added; anything else is a bug to see.
        if (!(err instanceof ServerChangeError && err.status === 404)) throw err;
      }
    };
    const id = fleetSource.id ?? FleetMember.defaultId(adminServer?.address.port ?? listenerSet.bound[0]?.address.port);
    fleet = new FleetMember(
      { store: etcd, source: fleetSource, log, version: VERSION, reload: () => velocity.reload(), facts, hasServer, setServerState, blocklist: fleetBlocklist },
      id,
    );
  }
  const servicesDeps = {
    control,
    plane,
    ...(fleet && etcd && configFile ? { changes: fleetServerChanges(fleet, new SharedConfigEditor(etcd, (text) => checkSharedCandidate(text, etcd, configFile))) } : {}),
    fileServers: (name: string) => {
      const service = config.services.find((s) => s.name === name);
      return service ? new Map(service.servers.map((s) => [serverIdFor(s), { url: s.url, weight: s.weight }])) : undefined;
    },
  };
  admin.add(
    ...servicesRoutes(servicesDeps),
    ...certificatesRoutes(automaticHttps),
    ...configRoutes({ config: () => config, lastReload: () => lastReload, reload: (next) => velocity.reload(next), configFile }),
    ...dashboardRoutes({ services: servicesDeps, blocklist: traffic.blocklist, lastReload: () => lastReload, observe: (o) => plane.addObserver(o), log }),
  );
  let listenersClosed = false;
  admin.add(
    ...probeRoutes({
      config: () => config,
      services: () => plane.allServices(),
      listening: () => !listenersClosed && listenerSet.bound.length > 0,
      draining: () => closing !== undefined,
      silentThreads: (timeoutMs) => threads?.silentThreads(timeoutMs) ?? Promise.resolve([]),
    }),
  );
  if (fleet) admin.add(...fleetRoutes(fleet));
  admin.add(openApiRoute(() => admin.list(), VERSION));
  fleet?.start();
  if (configFile && (options.watchConfig ?? true)) stopWatching = watchConfigFile(configFile, () => void velocity.reload(), log);

  const velocity: Velocity = {
    get address() {
      return listenerSet.bound[0]?.address as ListenAddress;
    },
    get addresses() {
      return listenerSet.bound.map((l) => l.address);
    },
    get listeners() {
      return listenerSet.bound;
    },
    adminAddress: adminServer?.address,
    admin,
    get config() {
      return config;
    },
    controlPlane: control,
    dataPlane: plane,
    threads,
    get lastReload() {
      return lastReload;
    },
    reload(next) {
      // Reloads apply in the order asked; none is lost.
      const result = reloadChain.then(() => doReload(next));
      reloadChain = result.catch(() => undefined);
      return result;
    },
    observe: (observer) => plane.addObserver(observer),
    reopenLogs: () => observers.reopen(),
    blocklist: traffic.blocklist,
    close() {
      closing ??= (async () => {
        plane.drain();
        threads?.markUnready();
        stopWatching?.();
        // Readiness fails first while requests are still served, so balancers in front stop sending.
        const grace = config.probes.shutdown_grace;
        if (grace > 0) {
          log.info({ graceMs: grace }, 'shutting down: /readyz answers 503; still serving during the grace period');
          await new Promise((resolve) => setTimeout(resolve, grace));
        }
        const deadline = Date.now() + config.shutdown_timeout;
        log.info({ timeoutMs: config.shutdown_timeout }, 'shutting down: finishing in-flight requests');
        await listenerSet.close(deadline);
        listenersClosed = true;
        await stopTheRest();
        log.info('stopped');
        log.flush?.();
      })();
      return closing;
    },
  };
  return velocity;
}

export function formatAddress(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
