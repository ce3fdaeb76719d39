/**
 * Turns providers' proposals into control-plane changes: adds what is new, drains
 * and removes what is gone, re-weights what changed. Only servers of the proposing
 * source are touched, so the static list, the API and each provider coexist.
 */
import type { Logger } from '../observe/logger.ts';
import { type ControlPlane, ServerChangeError, type ServerSource } from '../upstream/control-plane.ts';
import type { ProposedServer, ServerSetSink } from './provider.ts';

export class Reconciler implements ServerSetSink {
  private readonly control: ControlPlane;
  private readonly log: Logger;

  constructor(control: ControlPlane, log: Logger) {
    this.control = control;
    this.log = log;
  }

  propose(service: string, source: ServerSource, servers: readonly ProposedServer[]): void {
    let current: ReturnType<ControlPlane['servers']>;
    try {
      current = this.control.servers(service);
    } catch {
      this.log.warn({ service, source, servers: servers.map((s) => s.url) }, 'discovered servers for a service that is not in the config; ignored');
      return;
    }
    const wanted = new Map(servers.map((s) => [s.name, s]));
    for (const entry of current) {
      if (entry.source !== source || entry.removeBy !== undefined) continue;
      const proposal = wanted.get(entry.spec.id);
      if (!proposal || proposal.url !== entry.spec.url) this.apply(() => this.control.removeServer(service, entry.spec.id, `no longer proposed by ${source}`));
      else this.apply(() => this.control.setWeight(service, entry.spec.id, proposal.weight));
    }
    const live = new Set(
      this.control
        .servers(service)
        .filter((e) => e.removeBy === undefined)
        .map((e) => e.spec.id),
    );
    for (const proposal of servers) {
      if (live.has(proposal.name)) continue;
      this.apply(() =>
        this.control.addServer(
          service,
          { url: proposal.url, weight: proposal.weight, name: proposal.name, max_connections: undefined, health_path: proposal.healthPath, http2: false },
          source,
        ),
      );
    }
  }

  private apply(change: () => void): void {
    try {
      change();
    } catch (err) {
      if (err instanceof ServerChangeError) this.log.warn({ err: err.message }, 'discovery change not applied');
      else throw err;
    }
  }
}
