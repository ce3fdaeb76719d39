/**
 * The one owner of the server set: allocates shared slots, applies configs as
 * diffs (unchanged servers keep their slot and so their health, circuit and
 * counters), runs health checks, drains removed servers, and publishes a new
 * Topology to every data plane after each change.
 */
import { EventEmitter } from 'node:events';
import type { Config } from '../config/schema/root.ts';
import type { ServerConfig, ServiceConfig } from '../config/schema/service.ts';
import type { Logger } from '../observe/logger.ts';
import { count } from '../observe/metrics.ts';
import { ADMIN_DISABLED, ADMIN_DRAINING, ADMIN_ENABLED, type AdminState } from '../state/server-cells.ts';
import type { SharedState } from '../state/shared-state.ts';
import { type HealthChange, HealthChecker, type HealthStatusSetter } from './health-check.ts';
import type { ServerSpec } from './server.ts';
import type { Topology } from './topology.ts';

/** Where a server came from. `config` servers follow the file; others were added at runtime. */
export type ServerSource = 'config' | 'api' | 'docker' | 'process';

export interface ServerEntry {
  spec: ServerSpec;
  source: ServerSource;
  /** Set while the server drains before removal: when removal happens at the latest. */
  removeBy: number | undefined;
  /** This server's own health-check path, when it differs from the service's. */
  healthPath: string | undefined;
}

interface ServiceEntry {
  slot: number;
  config: ServiceConfig;
  servers: ServerEntry[];
}

export interface ControlPlaneEvents {
  topology: [Topology];
  health: [HealthChange];
  removed: [{ service: string; server: string; reason: string }];
}

export class ServerChangeError extends Error {
  readonly status: 400 | 404 | 409 | 422;
  readonly field?: string;

  constructor(status: 400 | 404 | 409 | 422, message: string, field?: string) {
    super(message);
    this.status = status;
    this.field = field;
    this.name = 'ServerChangeError';
  }
}

export function serverIdFor(server: { url: string; name?: string | undefined }): string {
  if (server.name) return server.name;
  const u = new URL(server.url);
  return `${u.hostname}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`;
}

function healthFor(service: ServiceConfig, server: ServerEntry): ServiceConfig['health'] {
  return server.healthPath ? { ...service.health, path: server.healthPath } : service.health;
}

export class ControlPlane extends EventEmitter<ControlPlaneEvents> {
  private readonly services = new Map<string, ServiceEntry>();
  private config: Config | undefined;
  private version = 0;
  private topology: Topology | undefined;
  readonly health: HealthChecker;
  private readonly drainTimer: NodeJS.Timeout;
  /** Slots freed by removal are reused only after every thread has moved on. */
  private readonly slotGrace: { slot: number; at: number }[] = [];

  readonly state: SharedState;
  private readonly log: Logger;

  constructor(state: SharedState, log: Logger) {
    super();
    this.state = state;
    this.log = log;
    const status: HealthStatusSetter = {
      isUp: (slot) => state.server(slot).activeUp,
      setUp: (slot, up, change) => {
        const server = state.server(slot);
        // Slow start ramps from when checks let it back in.
        if (change && up) server.usableSince = Date.now();
        server.activeUp = up;
        if (change) this.emit('health', change);
      },
      counted: (slot, passed) => count(state, 'velocity_health_checks_total', { row: slot, value: passed ? 'pass' : 'fail' }),
    };
    this.health = new HealthChecker(status, log, (service) => this.services.get(service)?.config.tls);
    this.drainTimer = setInterval(() => this.sweepDrained(), 100);
    this.drainTimer.unref();
  }

  get current(): Topology {
    if (!this.topology) throw new Error('no config applied yet');
    return this.topology;
  }

  get currentConfig(): Config {
    if (!this.config) throw new Error('no config applied yet');
    return this.config;
  }

  /** Applies a whole validated config as a diff against what runs now. */
  applyConfig(config: Config): Topology {
    const now = Date.now();
    const wanted = new Set(config.services.map((s) => s.name));
    for (const [name, entry] of this.services) {
      if (!wanted.has(name)) {
        for (const server of entry.servers) this.freeServer(server);
        this.state.releaseService(entry.slot);
        this.services.delete(name);
      }
    }
    for (const serviceConfig of config.services) {
      let entry = this.services.get(serviceConfig.name);
      if (!entry) {
        entry = { slot: this.state.allocateService(), config: serviceConfig, servers: [] };
        this.services.set(serviceConfig.name, entry);
      }
      entry.config = serviceConfig;
      const fromFile = new Map(serviceConfig.servers.map((s) => [serverIdFor(s), s]));
      // The file wins on reload, as with HAProxy's runtime API: servers from the file or added
      // through the API that the file does not list drain away; discovered servers stay.
      for (const server of entry.servers) {
        const id = server.spec.id;
        const wantedServer = fromFile.get(id);
        if ((server.source === 'config' || server.source === 'api') && !wantedServer) this.beginDrain(entry, server, now, 'not in the reloaded config file');
        if (wantedServer && wantedServer.url !== server.spec.url) this.beginDrain(entry, server, now, 'URL changed in the config file');
      }
      for (const [id, serverConfig] of fromFile) {
        const existing = entry.servers.find((s) => s.spec.id === id && s.removeBy === undefined);
        if (existing) {
          existing.source = 'config';
          existing.healthPath = serverConfig.health_path;
          this.writeLimits(existing.spec.slot, serverConfig, serviceConfig);
        } else {
          // Servers of the first config take their full share at once (as Envoy does at cluster
          // start); servers added later ramp up through slow start.
          this.addEntry(entry, serviceConfig.name, serverConfig, 'config', this.config ? now : 0);
        }
      }
      for (const server of entry.servers) this.health.watch(serviceConfig.name, server.spec, healthFor(serviceConfig, server), false);
    }
    this.config = config;
    return this.publish();
  }

  private addEntry(entry: ServiceEntry, service: string, server: ServerConfig, source: ServerSource, now: number): ServerEntry {
    const slot = this.state.allocateServer(now);
    const spec: ServerSpec = { id: serverIdFor(server), url: server.url, slot, http2: server.http2 || server.url.startsWith('h2c://') };
    const added: ServerEntry = { spec, source, removeBy: undefined, healthPath: server.health_path };
    entry.servers.push(added);
    this.writeLimits(slot, server, entry.config);
    this.health.watch(service, spec, healthFor(entry.config, added), true);
    return added;
  }

  private writeLimits(slot: number, server: ServerConfig, service: ServiceConfig): void {
    const cells = this.state.server(slot);
    cells.configuredWeight = server.weight;
    cells.maxConnections = server.max_connections ?? service.max_connections;
  }

  private beginDrain(entry: ServiceEntry, server: ServerEntry, now: number, reason: string): void {
    if (server.removeBy !== undefined) return;
    server.removeBy = now + entry.config.drain_timeout;
    this.state.server(server.spec.slot).swapAdmin(ADMIN_DRAINING);
    this.log.info({ server: server.spec.id, reason }, 'server draining before removal');
  }

  private freeServer(server: ServerEntry): void {
    this.health.unwatch(server.spec.slot);
    this.slotGrace.push({ slot: server.spec.slot, at: Date.now() + 10_000 });
  }

  /** Removes draining servers once idle (or past their deadline), and recycles old slots. */
  private sweepDrained(): void {
    const now = Date.now();
    let changed = false;
    for (const [name, entry] of this.services) {
      const keep: ServerEntry[] = [];
      for (const server of entry.servers) {
        if (server.removeBy === undefined) {
          keep.push(server);
          continue;
        }
        const inFlight = this.state.server(server.spec.slot).inFlight;
        if (inFlight > 0 && now < server.removeBy) {
          keep.push(server);
          continue;
        }
        const reason = inFlight > 0 ? `drain deadline passed with ${inFlight} requests in flight` : 'drained';
        this.log.info({ service: name, server: server.spec.id, reason }, 'server removed');
        this.emit('removed', { service: name, server: server.spec.id, reason });
        this.freeServer(server);
        changed = true;
      }
      entry.servers = keep;
    }
    while (this.slotGrace.length > 0 && (this.slotGrace[0] as { at: number }).at <= now) this.state.releaseServer((this.slotGrace.shift() as { slot: number }).slot);
    if (changed) this.publish();
  }

  private publish(): Topology {
    if (!this.config) throw new Error('no config applied yet');
    this.version++;
    this.topology = Object.freeze({
      version: this.version,
      config: this.config,
      services: [...this.services.entries()].map(([name, e]) => ({ name, slot: e.slot, config: e.config, servers: e.servers.map((s) => s.spec) })),
    });
    this.emit('topology', this.topology);
    return this.topology;
  }

  // ---- runtime changes (admin API, discovery) ----

  private serviceEntry(name: string): ServiceEntry {
    const entry = this.services.get(name);
    if (!entry) throw new ServerChangeError(404, `no service named "${name}"`, 'service');
    return entry;
  }

  private serverEntry(service: string, id: string): ServerEntry {
    const server = this.serviceEntry(service).servers.find((s) => s.spec.id === id && s.removeBy === undefined);
    if (!server) throw new ServerChangeError(404, `service "${service}" has no server "${id}"`, 'server');
    return server;
  }

  servers(service: string): readonly ServerEntry[] {
    return this.serviceEntry(service).servers;
  }

  serviceNames(): string[] {
    return [...this.services.keys()];
  }

  serviceSlot(name: string): number {
    return this.serviceEntry(name).slot;
  }

  addServer(service: string, server: ServerConfig, source: ServerSource): ServerSpec {
    const entry = this.serviceEntry(service);
    const id = serverIdFor(server);
    if (entry.servers.some((s) => s.removeBy === undefined && (s.spec.id === id || s.spec.url === server.url))) {
      throw new ServerChangeError(409, `service "${service}" already has server "${id}"`, 'url');
    }
    const added = this.addEntry(entry, service, server, source, Date.now());
    this.log.info({ service, server: id, url: server.url, source }, 'server added');
    this.publish();
    return added.spec;
  }

  removeServer(service: string, id: string, reason = 'removed at runtime'): void {
    const entry = this.serviceEntry(service);
    this.beginDrain(entry, this.serverEntry(service, id), Date.now(), reason);
    this.publish();
  }

  setWeight(service: string, id: string, weight: number): void {
    const server = this.serverEntry(service, id);
    this.state.server(server.spec.slot).configuredWeight = weight;
  }

  setAdminState(service: string, id: string, state: AdminState): void {
    const server = this.serverEntry(service, id);
    const value = state === 'enabled' ? ADMIN_ENABLED : state === 'draining' ? ADMIN_DRAINING : ADMIN_DISABLED;
    const cells = this.state.server(server.spec.slot);
    const before = cells.swapAdmin(value);
    if (before !== ADMIN_ENABLED && value === ADMIN_ENABLED) cells.usableSince = Date.now();
    this.log.info({ service, server: id, state }, 'server state changed');
  }

  async close(): Promise<void> {
    clearInterval(this.drainTimer);
    await this.health.close();
  }
}
