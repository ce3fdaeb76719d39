/**
 * Follows containers that opt in with labels (`velocity.service`, `velocity.port`,
 * …). The container list is the truth: any container event (whatever the engine
 * calls it — Docker and Podman differ) triggers a resync of the whole list, and so
 * does every reconnect after the engine went away. Containers with bad labels are
 * skipped with the reason logged once.
 */

import { cappedBackoff } from '../backoff.ts';
import type { DockerConfig } from '../config/schema/discovery.ts';
import type { Logger } from '../observe/logger.ts';
import type { ControlPlane } from '../upstream/control-plane.ts';
import type { Scalable } from './autoscaler.ts';
import { type ContainerSummary, DockerClient } from './docker-client.ts';
import type { DiscoveryProvider, ProposedServer, ServerSetSink } from './provider.ts';

export interface ContainerTemplate {
  image: string;
  port: number;
  env: Record<string, string>;
  labels: Record<string, string>;
  network?: string | undefined;
  cmd?: string[] | undefined;
}

/** Reads a container's labels into a server, or the reason it can't be one. */
export function containerToServer(
  c: ContainerSummary,
  prefix: string,
  defaultNetwork: string | undefined,
): { service: string; server: ProposedServer } | { skip: string } | undefined {
  const label = (name: string) => c.Labels[`${prefix}.${name}`];
  const service = label('service');
  if (!service) return undefined;
  const name = (c.Names[0] ?? c.Id.slice(0, 12)).replace(/^\//, '');
  const portText = label('port') ?? (c.Ports.length === 1 ? String(c.Ports[0]?.PrivatePort) : undefined);
  const port = Number(portText);
  if (!portText || !Number.isInteger(port) || port < 1 || port > 65535)
    return { skip: `container ${name}: label ${prefix}.port is ${portText === undefined ? 'missing' : `"${portText}", not a port number`}` };
  const weightText = label('weight') ?? '1';
  const weight = Number(weightText);
  if (!Number.isInteger(weight) || weight < 1) return { skip: `container ${name}: label ${prefix}.weight is "${weightText}", not a whole number ≥ 1` };
  let host: string | undefined;
  let hostPort = port;
  if (label('address') === 'published') {
    const binding = c.Ports.find((p) => p.PrivatePort === port && p.PublicPort);
    if (!binding?.PublicPort) return { skip: `container ${name}: ${prefix}.address=published but port ${port} is not published` };
    host = !binding.IP || binding.IP === '0.0.0.0' || binding.IP === '::' ? '127.0.0.1' : binding.IP;
    hostPort = binding.PublicPort;
  } else {
    const networks = c.NetworkSettings?.Networks ?? {};
    const wanted = label('network') ?? defaultNetwork;
    const entry = wanted ? networks[wanted] : Object.values(networks).find((n) => n.IPAddress);
    host = entry?.IPAddress || undefined;
    if (!host) return { skip: `container ${name}: no IP address on network ${wanted ?? '(any)'}; set ${prefix}.network or ${prefix}.address=published` };
  }
  const scheme = label('scheme') === 'https' ? 'https' : 'http';
  const server: ProposedServer = { url: `${scheme}://${host.includes(':') ? `[${host}]` : host}:${hostPort}`, weight, name };
  const healthPath = label('health.path');
  if (healthPath) server.healthPath = healthPath;
  return { service, server };
}

export class DockerProvider implements DiscoveryProvider {
  readonly source = 'docker' as const;
  readonly client: DockerClient;
  private sink: ServerSetSink | undefined;
  private readonly abort = new AbortController();
  private readonly skipped = new Set<string>();
  private readonly retiring = new Set<string>();
  private resyncTimer: NodeJS.Timeout | undefined;
  private containers: ContainerSummary[] = [];
  private connected = false;
  private readonly config: DockerConfig;
  private readonly services: ReadonlySet<string>;
  private readonly log: Logger;
  /** Resolves after each completed sync (tests and scalers wait on it). */
  private syncWaiters: (() => void)[] = [];

  constructor(config: DockerConfig, services: ReadonlySet<string>, log: Logger) {
    this.config = config;
    this.services = services;
    this.log = log.child({ provider: 'docker' });
    this.client = new DockerClient(config.host, config.timeout);
  }

  private get labelKey(): string {
    return `${this.config.label_prefix}.service`;
  }

  async start(sink: ServerSetSink): Promise<void> {
    this.sink = sink;
    void this.follow();
  }

  /** Initial list, then the event stream; on any failure back off, reconnect and resync. */
  private async follow(): Promise<void> {
    let failures = 0;
    while (!this.abort.signal.aborted) {
      try {
        await this.sync();
        if (!this.connected) this.log.info({ engine: this.client.endpoint }, 'following containers');
        this.connected = true;
        failures = 0;
        await this.client.events(() => this.scheduleResync(), this.abort.signal);
        if (!this.abort.signal.aborted) throw new Error('event stream ended');
      } catch (err) {
        if (this.abort.signal.aborted) return;
        failures++;
        const wait = cappedBackoff(this.config.reconnect_backoff.base, this.config.reconnect_backoff.max, failures - 1);
        if (this.connected || failures === 1)
          this.log.warn(
            { engine: this.client.endpoint, err: (err as Error).message, retryInMs: wait },
            'container engine unreachable; keeping the last known servers and retrying',
          );
        this.connected = false;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private scheduleResync(): void {
    if (this.resyncTimer) return;
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = undefined;
      void this.sync().catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'container resync failed'));
    }, 50);
  }

  /** Lists labelled containers and proposes each service's full set. */
  async sync(): Promise<void> {
    const list = (await this.client.listContainers(this.labelKey)).slice(0, this.config.max_containers);
    this.containers = list;
    const byService = new Map<string, ProposedServer[]>();
    for (const name of this.services) byService.set(name, []);
    for (const c of list) {
      const read = containerToServer(c, this.config.label_prefix, this.config.network);
      if (!read) continue;
      if ('skip' in read) {
        if (!this.skipped.has(c.Id)) this.log.warn({ reason: read.skip }, 'container skipped');
        this.skipped.add(c.Id);
        continue;
      }
      if (this.retiring.has(c.Id)) continue;
      const servers = byService.get(read.service);
      if (!servers) {
        if (!this.skipped.has(c.Id)) this.log.warn({ service: read.service, container: read.server.name }, 'container names a service that is not in the config; skipped');
        this.skipped.add(c.Id);
        continue;
      }
      servers.push(read.server);
    }
    for (const [service, servers] of byService) this.sink?.propose(service, this.source, servers);
    for (const resolve of this.syncWaiters.splice(0)) resolve();
  }

  /** Containers of a service that Velocity created from a template (for the autoscaler). */
  managed(service: string): ContainerSummary[] {
    return this.containers.filter((c) => c.Labels[this.labelKey] === service && c.Labels[`${this.config.label_prefix}.managed`] === 'true' && !this.retiring.has(c.Id));
  }

  /** Takes a container out of the proposals (it drains), to be stopped after. */
  async retire(id: string): Promise<void> {
    this.retiring.add(id);
    await this.sync();
  }

  forget(id: string): void {
    this.retiring.delete(id);
  }

  nextSync(): Promise<void> {
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    await this.client.close().catch(() => undefined);
  }
}

/** Scales a Docker service by creating containers from a template and draining before removing them. */
export class DockerScaler implements Scalable {
  private serial = 0;
  private readonly provider: DockerProvider;
  private readonly service: string;
  private readonly template: ContainerTemplate;
  private readonly control: ControlPlane;
  private readonly prefix: string;
  private readonly log: Logger;

  constructor(provider: DockerProvider, service: string, template: ContainerTemplate, control: ControlPlane, prefix: string, log: Logger) {
    this.provider = provider;
    this.service = service;
    this.template = template;
    this.control = control;
    this.prefix = prefix;
    this.log = log.child({ service, provider: 'docker', component: 'scaler' });
  }

  get count(): number {
    return this.provider.managed(this.service).length;
  }

  async scaleTo(count: number): Promise<void> {
    const current = this.provider.managed(this.service);
    const work: Promise<void>[] = [];
    for (let i = current.length; i < count; i++) work.push(this.createOne());
    for (const c of current.slice(count).reverse()) work.push(this.removeOne(c.Id, (c.Names[0] ?? c.Id).replace(/^\//, '')));
    await Promise.all(work);
    await this.provider.sync();
  }

  private async createOne(): Promise<void> {
    const t = this.template;
    const name = `velocity-${this.service}-${process.pid}-${Date.now().toString(36)}-${this.serial++}`;
    const id = await this.provider.client.createContainer(
      {
        Image: t.image,
        Env: Object.entries(t.env).map(([k, v]) => `${k}=${v}`),
        Labels: {
          ...t.labels,
          [`${this.prefix}.service`]: this.service,
          [`${this.prefix}.port`]: String(t.port),
          [`${this.prefix}.managed`]: 'true',
          ...(t.network ? { [`${this.prefix}.network`]: t.network } : {}),
        },
        ...(t.cmd ? { Cmd: t.cmd } : {}),
        HostConfig: t.network ? { NetworkMode: t.network } : {},
      },
      name,
    );
    await this.provider.client.startContainer(id);
    this.log.info({ container: name }, 'container started by the autoscaler');
  }

  private async removeOne(id: string, name: string): Promise<void> {
    const removed = new Promise<void>((resolve) => {
      const timer = setTimeout(done, 60_000);
      const control = this.control;
      const service = this.service;
      function done() {
        clearTimeout(timer);
        control.off('removed', onRemoved);
        resolve();
      }
      function onRemoved(e: { service: string; server: string }) {
        if (e.service === service && e.server === name) done();
      }
      control.on('removed', onRemoved);
    });
    await this.provider.retire(id);
    await removed;
    await this.provider.client.stopContainer(id, 5).catch(() => undefined);
    await this.provider.client.removeContainer(id).catch(() => undefined);
    this.provider.forget(id);
    this.log.info({ container: name }, 'container drained and removed by the autoscaler');
  }
}
