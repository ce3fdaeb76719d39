/**
 * The first guard: 403 before any other work for a client on the dynamic blocklist,
 * in a `deny` list, or outside a non-empty `allow` list — global lists first, then
 * the service's. Deny beats allow: a client in both is refused. A client address
 * that is not an IP (it cannot be checked) is refused wherever an allow list is set.
 */

import { CidrSet, ipToBig } from '../cidr.ts';
import type { Config } from '../config/schema/root.ts';
import type { ServiceConfig } from '../config/schema/service.ts';
import { VelocityError } from '../errors.ts';
import type { Guard, RequestContext } from '../proxy/context.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import type { Blocklist } from './blocklist.ts';

interface FilterSets {
  allow: CidrSet;
  deny: CidrSet;
}

const filterSets = (f: Config['ip_filter']): FilterSets => ({ allow: new CidrSet(f.allow), deny: new CidrSet(f.deny) });
const isEmpty = (s: FilterSets) => s.allow.size === 0 && s.deny.size === 0;
const noLists = (f: Config['ip_filter']) => f.allow.length === 0 && f.deny.length === 0;

export class IpFilterGuard implements Guard {
  private readonly global: FilterSets;
  private readonly perService = new WeakMap<ServiceConfig, FilterSets>();
  private readonly blocklist: Blocklist;

  constructor(config: Config, blocklist: Blocklist) {
    this.global = filterSets(config.ip_filter);
    this.blocklist = blocklist;
  }

  private setsFor(service: ServiceRuntime): FilterSets {
    let sets = this.perService.get(service.config);
    if (!sets) {
      sets = filterSets(service.config.ip_filter);
      this.perService.set(service.config, sets);
    }
    return sets;
  }

  check(ctx: RequestContext, service: ServiceRuntime | undefined): VelocityError | undefined {
    // Nothing to check (the usual case) is told from the service's own lists, before the lookup of its sets (a WeakMap per request showed in perf).
    if (this.blocklist.size === 0 && isEmpty(this.global) && (!service || noLists(service.config.ip_filter))) return undefined;
    const serviceSets = service ? this.setsFor(service) : undefined;
    const ip = ipToBig(ctx.clientIp);
    const blocked = ip === undefined ? undefined : this.blocklist.match(ip);
    if (blocked) return refuse(ctx, blocked.source === 'auto-ban' ? 'banned' : 'blocked');
    for (const sets of serviceSets ? [this.global, serviceSets] : [this.global]) {
      if (ip === undefined ? sets.allow.size > 0 : sets.deny.has(ip) || (sets.allow.size > 0 && !sets.allow.has(ip))) return refuse(ctx, 'denied');
    }
    return undefined;
  }
}

function refuse(ctx: RequestContext, decision: string): VelocityError {
  ctx.record.decision = decision;
  return new VelocityError('IP_DENIED');
}
