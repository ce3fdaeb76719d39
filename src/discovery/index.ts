/**
 * The providers and autoscalers a config asks for. A reload applies them live:
 * a provider whose settings changed is stopped and started again with the new
 * ones (its proposal then replaces the old one's servers), unchanged ones keep
 * running, and autoscalers follow their new targets.
 */
import type { Config } from '../config/schema/root.ts';
import type { RequestRecord } from '../observe/events.ts';
import type { Logger } from '../observe/logger.ts';
import type { ControlPlane } from '../upstream/control-plane.ts';
import { Autoscaler, type Scalable } from './autoscaler.ts';
import { DockerProvider, DockerScaler } from './docker-provider.ts';
import { ProcessProvider } from './process-provider.ts';
import type { DiscoveryProvider } from './provider.ts';
import { Reconciler } from './reconciler.ts';
import { metricFor } from './scale-metrics.ts';

interface Running<T> {
  key: string;
  value: T;
}

const keyOf = (value: unknown) => JSON.stringify(value ?? null);

export class Discovery {
  private readonly reconciler: Reconciler;
  private readonly processes = new Map<string, Running<ProcessProvider>>();
  private docker: Running<DockerProvider> | undefined;
  private scalers = new Map<string, Autoscaler>();
  private scalerKey = '';
  private closers: (() => void)[] = [];
  private readonly control: ControlPlane;
  private readonly log: Logger;
  private readonly baseDir: string;
  private readonly subscribe: (fn: (r: RequestRecord) => void) => () => void;

  constructor(control: ControlPlane, log: Logger, baseDir: string, subscribe: (fn: (r: RequestRecord) => void) => () => void) {
    this.control = control;
    this.log = log;
    this.baseDir = baseDir;
    this.subscribe = subscribe;
    this.reconciler = new Reconciler(control, log);
  }

  get autoscalers(): ReadonlyMap<string, Autoscaler> {
    return this.scalers;
  }

  get providers(): readonly DiscoveryProvider[] {
    return [...[...this.processes.values()].map((p) => p.value), ...(this.docker ? [this.docker.value] : [])];
  }

  /** Starts, restarts or stops providers and autoscalers to match `config` (at start and on every reload). */
  async apply(config: Config): Promise<void> {
    const starting: DiscoveryProvider[] = [];
    const stopping: DiscoveryProvider[] = [];
    const wanted = new Map(config.services.filter((s) => s.process).map((s) => [s.name, s]));
    for (const [name, running] of this.processes) {
      const service = wanted.get(name);
      if (service && keyOf(service.process) === running.key) continue;
      stopping.push(running.value);
      this.processes.delete(name);
    }
    for (const [name, service] of wanted) {
      if (this.processes.has(name) || !service.process) continue;
      const provider = new ProcessProvider(name, service.process, this.control, this.log, this.baseDir);
      this.processes.set(name, { key: keyOf(service.process), value: provider });
      starting.push(provider);
    }
    const dockerKey = keyOf([config.docker, config.services.map((s) => s.name)]);
    if (this.docker && this.docker.key !== dockerKey) {
      stopping.push(this.docker.value);
      this.docker = undefined;
    }
    if (config.docker && !this.docker) {
      const provider = new DockerProvider(config.docker, new Set(config.services.map((s) => s.name)), this.log);
      this.docker = { key: dockerKey, value: provider };
      starting.push(provider);
    }
    if (stopping.length > 0 || starting.length > 0)
      this.log.info({ starting: starting.map((p) => p.source), stopping: stopping.map((p) => p.source) }, 'discovery providers change');
    await Promise.all(stopping.map((p) => p.stop()));
    await Promise.all(starting.map((p) => p.start(this.reconciler)));
    this.applyScalers(config, starting.length > 0 || stopping.length > 0);
  }

  private applyScalers(config: Config, providersChanged: boolean): void {
    const key = keyOf(config.services.map((s) => [s.name, s.autoscale]));
    if (!providersChanged && key === this.scalerKey) return;
    this.stopScalers();
    this.scalerKey = key;
    for (const service of config.services) {
      if (!service.autoscale) continue;
      const target = this.scalable(config, service.name);
      if (!target) {
        this.log.warn({ service: service.name }, 'autoscale is set but the service has no process or container provider to scale; ignored');
        continue;
      }
      const metric = metricFor(service.autoscale, this.control, service.name, this.subscribe);
      if (metric.close) this.closers.push(metric.close);
      const scaler = new Autoscaler(service.name, service.autoscale, target, metric, this.log);
      scaler.start();
      this.scalers.set(service.name, scaler);
    }
  }

  private scalable(config: Config, name: string): Scalable | undefined {
    const process = this.processes.get(name);
    if (process) return process.value;
    const service = config.services.find((s) => s.name === name);
    const template = service?.autoscale?.container;
    if (template && this.docker && config.docker) return new DockerScaler(this.docker.value, name, template, this.control, config.docker.label_prefix, this.log);
    return undefined;
  }

  private stopScalers(): void {
    for (const scaler of this.scalers.values()) scaler.stop();
    for (const close of this.closers) close();
    this.scalers = new Map();
    this.closers = [];
  }

  async stop(): Promise<void> {
    this.stopScalers();
    await Promise.all(this.providers.map((p) => p.stop()));
    this.processes.clear();
    this.docker = undefined;
  }
}
