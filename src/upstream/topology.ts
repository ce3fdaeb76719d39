/** The plain-data picture of services and servers that the control plane sends to every thread. */
import type { Config } from '../config/schema/root.ts';
import type { ServiceConfig } from '../config/schema/service.ts';
import type { ServerSpec } from './server.ts';

export interface ServiceSpec {
  name: string;
  slot: number;
  config: ServiceConfig;
  /** Servers in a stable order (config order, then added ones). Draining ones stay until removed. */
  servers: ServerSpec[];
}

export interface Topology {
  /** Increases with every change; threads acknowledge it. */
  version: number;
  config: Config;
  services: ServiceSpec[];
}
