/** Starts the providers and autoscalers a config asks for, and stops them again. */
import type { Config } from '../config/schema/root.ts';
import type { RequestRecord } from '../observe/events.ts';
import type { Logger } from '../observe/logger.ts';
import type { ControlPlane } from '../runtime/control-plane.ts';
import { Autoscaler, type Scalable } from './autoscaler.ts';
import { ProcessProvider } from './process-provider.ts';
import type { DiscoveryProvider } from './provider.ts';
import { Reconciler } from './reconciler.ts';
import { metricFor } from './scale-metrics.ts';

export interface Discovery {
  readonly autoscalers: ReadonlyMap<string, Autoscaler>;
  readonly providers: readonly DiscoveryProvider[];
  stop(): Promise<void>;
}

/** Extra providers (e.g. Docker) plug in here: given the config, return the providers and scalables to run. */
export type ProviderFactory = (config: Config, control: ControlPlane, log: Logger) => { providers: DiscoveryProvider[]; scalables: Map<string, Scalable> };

export async function startDiscovery(
  config: Config,
  control: ControlPlane,
  log: Logger,
  baseDir: string,
  subscribe: (fn: (r: RequestRecord) => void) => () => void,
  extra: readonly ProviderFactory[] = [],
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
  for (const factory of extra) {
    const made = factory(config, control, log);
    providers.push(...made.providers);
    for (const [name, scalable] of made.scalables) scalables.set(name, scalable);
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
