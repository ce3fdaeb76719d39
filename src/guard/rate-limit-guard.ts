/**
 * The rate-limit guard: global rules count every request, a service's rules its
 * own requests. Over a limit → 429 with Retry-After and the IETF RateLimit-Policy /
 * RateLimit headers (draft-ietf-httpapi-ratelimit-headers); the same headers on
 * allowed responses for rules with `headers: true`. Synchronous with the local
 * store, so the common path allocates no promise.
 */
import type { Config } from '../config/schema/root.ts';
import type { ServiceConfig } from '../config/schema/service.ts';
import { VelocityError } from '../errors.ts';
import type { Guard, RequestContext } from '../proxy/context.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import type { AutoBan } from './auto-ban.ts';
import { LimiterUnavailableError } from './failover-rate-limit-store.ts';
import type { Verdict } from './gcra.ts';
import { type CompiledRule, compileRule, normalizePath } from './rate-limit.ts';
import type { RateLimitStore } from './rate-limit-store.ts';

type Outcome = VelocityError | undefined;

const seconds = (ms: number, min: number) => Math.max(min, Math.ceil(ms / 1000));

export class RateLimitGuard implements Guard {
  private readonly global: CompiledRule[];
  private readonly perService = new WeakMap<ServiceConfig, CompiledRule[]>();
  private readonly store: RateLimitStore;
  private readonly bans: AutoBan;

  constructor(config: Config, store: RateLimitStore, bans: AutoBan) {
    this.global = config.rate_limits.map((r, i) => compileRule(r, i, 'global'));
    this.store = store;
    this.bans = bans;
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

  check(ctx: RequestContext, service: ServiceRuntime | undefined): Outcome | Promise<Outcome> {
    const rules = this.rulesFor(service);
    if (rules.length === 0) return undefined;
    return this.from(ctx, rules, 0, normalizePath(ctx.url), Date.now());
  }

  /** Checks rules[i…]; every matching rule takes one request from its own key. */
  private from(ctx: RequestContext, rules: CompiledRule[], first: number, path: string, now: number): Outcome | Promise<Outcome> {
    for (let i = first; i < rules.length; i++) {
      const rule = rules[i] as CompiledRule;
      const key = rule.keyFor(ctx, path);
      if (key === undefined) continue;
      let verdict: Verdict | Promise<Verdict>;
      try {
        verdict = this.store.take(key, rule.limit, now);
      } catch (err) {
        return unavailable(ctx, err);
      }
      if (verdict instanceof Promise) {
        return verdict.then(
          (v) => this.judge(ctx, rule, v, now) ?? this.from(ctx, rules, i + 1, path, now),
          (err: unknown) => unavailable(ctx, err),
        );
      }
      const refused = this.judge(ctx, rule, verdict, now);
      if (refused) return refused;
    }
    return undefined;
  }

  private judge(ctx: RequestContext, rule: CompiledRule, verdict: Verdict, now: number): Outcome {
    if (verdict.allowed) {
      if (rule.rule.headers) {
        ctx.addResponseHeader('ratelimit-policy', rule.policy);
        ctx.addResponseHeader('ratelimit', `"${rule.name}";r=${verdict.remaining};t=${seconds(verdict.resetMs, 0)}`);
      }
      return undefined;
    }
    const retryAfter = seconds(verdict.retryAfterMs, 1);
    ctx.record.decision = 'rate-limited';
    ctx.addResponseHeader('ratelimit-policy', rule.policy);
    ctx.addResponseHeader('ratelimit', `"${rule.name}";r=0;t=${retryAfter}`);
    // The ban is counted off the request path: the 429 does not wait for it.
    if (rule.rule.ban) void this.bans.refused(rule, ctx.clientIp, now);
    return new VelocityError('RATE_LIMITED', undefined, { retryAfter });
  }
}

/** Shared state unreachable with `on_failure: closed`: refuse what the limits cover. */
function unavailable(ctx: RequestContext, err: unknown): VelocityError {
  if (!(err instanceof LimiterUnavailableError)) throw err;
  ctx.record.decision = 'rate-limit-unavailable';
  return new VelocityError('RATE_LIMITED', 'Rate limits cannot be checked right now', { retryAfter: 1 });
}
