/** Builds the traffic-control guards from a config and keeps the state they share across reloads. */
import type { AdminRoute } from '../admin/router.ts';
import { AdminError } from '../admin/router.ts';
import type { Config } from '../config/schema/root.ts';
import { parseDuration } from '../config/units.ts';
import type { Logger } from '../observe/logger.ts';
import type { DataPlane } from '../runtime/data-plane.ts';
import { Blocklist, BlocklistError } from './blocklist.ts';
import { CidrSet } from './cidr.ts';
import { ClientIpResolver } from './client-ip.ts';
import { IpFilterGuard, RateLimitGuard } from './guards.ts';
import { LocalRateLimitTable } from './rate-limit-store.ts';
import { RedisState } from './redis-state.ts';

export class TrafficControl {
  readonly blocklist: Blocklist;
  readonly redis: RedisState | undefined;
  private readonly table: LocalRateLimitTable;
  private readonly log: Logger;

  constructor(config: Config, tableBuffer: SharedArrayBuffer, log: Logger) {
    this.log = log;
    this.table = new LocalRateLimitTable(tableBuffer);
    this.redis = config.state.store === 'redis' && config.state.url ? new RedisState(config.state.url, config.state.prefix, log) : undefined;
    this.blocklist = new Blocklist(log, this.redis);
  }

  /** Installs the guards and client-IP resolution for `config` on a data plane (at start and on reload). */
  apply(config: Config, plane: DataPlane): void {
    plane.clientIps = new ClientIpResolver(new CidrSet(config.trusted_proxies));
    plane.guards = [new IpFilterGuard(config, this.blocklist), new RateLimitGuard(config, this.table, this.redis, this.blocklist, this.log)];
  }

  routes(): AdminRoute[] {
    const rethrow = (err: unknown): never => {
      if (err instanceof BlocklistError) throw new AdminError(400, err.message, err.field);
      throw err;
    };
    return [
      {
        method: 'GET',
        path: '/api/v1/blocklist',
        mutates: false,
        summary: 'Blocked addresses and ranges (operator entries and auto-bans) with their expiry',
        handle: () => ({ entries: this.blocklist.list() }),
      },
      {
        method: 'POST',
        path: '/api/v1/blocklist',
        mutates: true,
        summary: 'Block an address or CIDR range, optionally for a time (ttl: 10m)',
        status: 201,
        handle: async ({ body }) => {
          const b = (body ?? {}) as { cidr?: unknown; ttl?: unknown; reason?: unknown };
          for (const key of Object.keys(b)) if (!['cidr', 'ttl', 'reason'].includes(key)) throw new AdminError(400, `unknown field "${key}"`, key);
          if (typeof b.cidr !== 'string') throw new AdminError(400, 'cidr: expected an IP address or CIDR range', 'cidr');
          let ttl: number | undefined;
          if (b.ttl !== undefined) {
            ttl = typeof b.ttl === 'string' ? parseDuration(b.ttl) : undefined;
            if (ttl === undefined) throw new AdminError(400, 'ttl: expected a duration such as 30s or 10m', 'ttl');
          }
          try {
            return await this.blocklist.add(b.cidr, ttl, typeof b.reason === 'string' ? b.reason : 'added through the admin API');
          } catch (err) {
            return rethrow(err);
          }
        },
      },
      {
        method: 'DELETE',
        path: '/api/v1/blocklist/:cidr',
        mutates: true,
        summary: 'Unblock an address or range (URL-encode the slash: 10.0.0.0%2F8)',
        handle: async ({ params }) => {
          if (!(await this.blocklist.remove(params.cidr as string))) throw new AdminError(404, `"${params.cidr}" is not blocked`, 'cidr');
          return { removed: params.cidr };
        },
      },
    ];
  }

  async close(): Promise<void> {
    this.blocklist.close();
    await this.redis?.close();
  }
}
