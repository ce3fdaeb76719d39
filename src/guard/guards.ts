/**
 * The guards on the data path, in order: the IP filter (blocklist, deny, allow —
 * 403 before any other work), then rate limits (429 with Retry-After and the IETF
 * RateLimit headers). Global rules apply to every request, service rules to the
 * service's requests.
 */
import type { Config } from '../config/schema/root.ts';
import type { ServiceConfig } from '../config/schema/service.ts';
import { VelocityError } from '../errors.ts';
import type { Logger } from '../observe/logger.ts';
import type { Guard, RequestContext } from '../proxy/handler.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import type { Blocklist } from './blocklist.ts';
import { CidrSet, ipToBig } from './cidr.ts';
import type { Verdict } from './gcra.ts';
import { type CompiledRule, compileRule } from './rate-limit.ts';
import type { LocalRateLimitTable } from './rate-limit-store.ts';
import type { RedisState } from './redis-state.ts';

interface FilterSets {
  allow: CidrSet;
  deny: CidrSet;
}

const filterSets = (f: Config['ip_filter']): FilterSets => ({ allow: new CidrSet(f.allow), deny: new CidrSet(f.deny) });

export class IpFilterGuard implements Guard {
  private readonly global: FilterSets;
  private readonly perService = new WeakMap<ServiceConfig, FilterSets>();
  private readonly blocklist: Blocklist;

  constructor(config: Config, blocklist: Blocklist) {
    this.global = filterSets(config.ip_filter);
    this.blocklist = blocklist;
  }

  private refuse(ctx: RequestContext, decision: string): VelocityError {
    ctx.record.decision = decision;
    return new VelocityError('IP_DENIED');
  }

  check(ctx: RequestContext, service: ServiceRuntime | undefined): VelocityError | undefined {
    const blocked = this.blocklist.match(ctx.clientIp);
    if (blocked) return this.refuse(ctx, blocked.reason.startsWith('auto-ban') ? 'banned' : 'blocked');
    const ip = ipToBig(ctx.clientIp);
    if (ip === undefined) return undefined;
    // Deny beats allow: a client in both lists is refused.
    const sets = [this.global];
    if (service) {
      let s = this.perService.get(service.config);
      if (!s) {
        s = filterSets(service.config.ip_filter);
        this.perService.set(service.config, s);
      }
      sets.push(s);
    }
    for (const s of sets) {
      if (s.deny.has(ip)) return this.refuse(ctx, 'denied');
      if (s.allow.size > 0 && !s.allow.has(ip)) return this.refuse(ctx, 'denied');
    }
    return undefined;
  }
}

export class RateLimitGuard implements Guard {
  private readonly global: CompiledRule[];
  private readonly perService = new WeakMap<ServiceConfig, CompiledRule[]>();
  private readonly local: LocalRateLimitTable;
  private readonly redis: RedisState | undefined;
  private readonly failClosed: boolean;
  private readonly blocklist: Blocklist;
  private readonly log: Logger;

  constructor(config: Config, local: LocalRateLimitTable, redis: RedisState | undefined, blocklist: Blocklist, log: Logger) {
    this.global = config.rate_limits.map((r, i) => compileRule(r, i, 'global'));
    this.local = local;
    this.redis = redis;
    this.failClosed = config.state.on_failure === 'closed';
    this.blocklist = blocklist;
    this.log = log;
  }

  private rulesFor(service: ServiceRuntime | undefined): CompiledRule[] {
    if (!service || service.config.rate_limits.length === 0) return this.global;
    let rules = this.perService.get(service.config);
    if (!rules) {
      rules = [...this.global, ...service.config.rate_limits.map((r, i) => compileRule(r, i, service.name))];
      this.perService.set(service.config, rules);
    }
    return rules;
  }

  /** Local table, or Redis when configured and reachable (falling back as configured). */
  private async take(key: string, rule: CompiledRule, now: number): Promise<Verdict | 'unavailable'> {
    if (this.redis) {
      if (this.redis.available) {
        try {
          return await this.redis.take(key, rule.limit, now);
        } catch {
          // Counted below as unavailable.
        }
      }
      if (this.failClosed) return 'unavailable';
    }
    return this.local.take(key, rule.limit, now);
  }

  async check(ctx: RequestContext, service: ServiceRuntime | undefined): Promise<VelocityError | undefined> {
    const rules = this.rulesFor(service);
    if (rules.length === 0) return undefined;
    const path = ctx.url.split('?')[0] ?? ctx.url;
    const now = Date.now();
    for (const rule of rules) {
      const matched = rule.match(ctx.method, path);
      if (matched === undefined) continue;
      const key = `${rule.name}|${rule.rule.key.map((part) => (part === 'client_ip' ? ctx.clientIp : part === 'endpoint' ? `${ctx.method} ${matched}` : (ctx.header(part.slice(7)) ?? ''))).join('|')}`;
      const verdict = await this.take(key, rule, now);
      const policy = `"${rule.name}";q=${rule.rule.rate.count};w=${rule.windowSeconds}`;
      if (verdict === 'unavailable') {
        ctx.record.decision = 'rate-limit-unavailable';
        return new VelocityError('RATE_LIMITED', 'Rate limits cannot be checked right now', { retryAfter: 1 });
      }
      if (!verdict.allowed) {
        ctx.record.decision = 'rate-limited';
        ctx.addResponseHeader('ratelimit-policy', policy);
        ctx.addResponseHeader('ratelimit', `"${rule.name}";r=0;t=${Math.max(1, Math.ceil(verdict.retryAfterMs / 1000))}`);
        if (rule.rule.ban) await this.countTowardsBan(rule, ctx.clientIp, now);
        return new VelocityError('RATE_LIMITED', undefined, { retryAfter: Math.max(1, Math.ceil(verdict.retryAfterMs / 1000)) });
      }
      if (rule.rule.headers) {
        ctx.addResponseHeader('ratelimit-policy', policy);
        ctx.addResponseHeader('ratelimit', `"${rule.name}";r=${verdict.remaining};t=${Math.max(0, Math.ceil(verdict.resetMs / 1000))}`);
      }
    }
    return undefined;
  }

  /** fail2ban style: more than `after` refusals within `window` block the client for `duration`. */
  private async countTowardsBan(rule: CompiledRule, ip: string, now: number): Promise<void> {
    const ban = rule.rule.ban;
    if (!ban) return;
    const verdict = await this.take(`ban|${rule.name}|${ip}`, { ...rule, limit: { intervalMs: ban.window / ban.after, burst: ban.after } }, now);
    if (verdict !== 'unavailable' && !verdict.allowed) {
      await this.blocklist.add(ip, ban.duration, `auto-ban: over rate limit "${rule.name}" more than ${ban.after} times in ${ban.window} ms`, now);
      this.log.warn({ ip, rule: rule.name, durationMs: ban.duration }, 'client banned');
    }
  }
}
