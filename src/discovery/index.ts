/** Starts the providers and autoscalers a config asks for, and stops them again. */
import type { Config } from '../config/schema/root.ts';
import type { RequestRecord } from '../observe/events.ts';
import type { Logger } from '../observe/logger.ts';
import type { ControlPlane } from '../runtime/control-plane.ts';
import { Autoscaler, type Scalable } from './autoscaler.ts';
import { DockerProvider, DockerScaler } from './docker-provider.ts';
import { ProcessProvider } from './process-provider.ts';
import type { DiscoveryProvider } from './provider.ts';
import { Reconciler } from './reconciler.ts';
import { metricFor } from './scale-metrics.ts';

export interface Discovery {
  readonly autoscalers: ReadonlyMap<string, Autoscaler>;
  readonly providers: readonly DiscoveryProvider[];
  stop(): Promise<void>;
}

export async function startDiscovery(
  config: Config,
  control: ControlPlane,
  log: Logger,
  baseDir: string,
  subscribe: (fn: (r: RequestRecord) => void) => () => void,
): Promise<Discovery> {
  const reconciler = new Reconciler(control, log);
  const providers: DiscoveryProvider[] = [];
  const scalables = new Map<string, Scalable>();
  for (const service of config.services) {
    if (!service.process) continue;
    const provider = new ProcessProvider(service.name, service.process, control, log, baseDir);
    providers.push(provider);
    scalables.set(service.name, provider);
  }
  if (config.docker) {
    const docker = new DockerProvider(config.docker, new Set(config.services.map((s) => s.name)), log);
    providers.push(docker);
    for (const service of config.services) {
      const template = service.autoscale?.container;
      if (template && !service.process) scalables.set(service.name, new DockerScaler(docker, service.name, template, control, config.docker.label_prefix, log));
    }
  }
  await Promise.all(providers.map((p) => p.start(reconciler)));

  const autoscalers = new Map<string, Autoscaler>();
  const closers: (() => void)[] = [];
  for (const service of config.services) {
    if (!service.autoscale) continue;
    const target = scalables.get(service.name);
    if (!target) {
      log.warn({ service: service.name }, 'autoscale is set but the service has no process or container provider to scale; ignored');
      continue;
    }
    const metric = metricFor(service.autoscale, control, service.name, subscribe);
    if (metric.close) closers.push(metric.close);
    const scaler = new Autoscaler(service.name, service.autoscale, target, metric, log);
    scaler.start();
    autoscalers.set(service.name, scaler);
  }
  return {
    autoscalers,
    providers,
    async stop() {
      for (const scaler of autoscalers.values()) scaler.stop();
      for (const close of closers) close();
      await Promise.all(providers.map((p) => p.stop()));
    },
  };
}
