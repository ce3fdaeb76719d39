/**
 * A discovery provider only proposes a service's server set; the reconciler applies
 * it through the same add/drain/remove path the admin API uses, so health, slow
 * start and draining behave the same wherever a server came from.
 */
import type { ServerSource } from '../upstream/control-plane.ts';

export interface ProposedServer {
  url: string;
  weight: number;
  /** Stable name for logs and metrics (container name, process instance). */
  name: string;
  /** Health-check path for this server when it differs from the service's. */
  healthPath?: string;
}

export interface ServerSetSink {
  /** The complete set this provider wants for the service now (replaces its previous proposal). */
  propose(service: string, source: ServerSource, servers: readonly ProposedServer[]): void;
}

export interface DiscoveryProvider {
  readonly source: ServerSource;
  start(sink: ServerSetSink): Promise<void>;
  stop(): Promise<void>;
}
