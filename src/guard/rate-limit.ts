/** Rate-limit rules: which requests a rule counts, by what key, and its GCRA limit. */
import type { RateLimitRule } from '../config/schema/traffic.ts';
import type { Limit } from './gcra.ts';

export interface CompiledRule {
  name: string;
  rule: RateLimitRule;
  limit: Limit;
  /** Seconds in the window of the RateLimit-Policy header. */
  windowSeconds: number;
  /** The pattern matched (for `endpoint` keys), or undefined when the rule does not apply. */
  match(method: string, path: string): string | undefined;
}

function globToRegExp(glob: string): RegExp {
  const source = glob
    .split('**')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*'))
    .join('.*');
  return new RegExp(`^${source}$`);
}

export function compileRule(rule: RateLimitRule, index: number, scope: string): CompiledRule {
  const { count, periodMs } = rule.rate;
  const burst = rule.burst ?? Math.max(1, Math.floor((count * 1000) / periodMs));
  const matchers = rule.paths.map((p) => {
    if (!p.includes('*')) return (path: string) => (path.startsWith(p) ? p : undefined);
    const re = globToRegExp(p);
    return (path: string) => (re.test(path) ? p : undefined);
  });
  const methods = new Set(rule.methods);
  return {
    name: rule.name ?? `${scope}-${index}`,
    rule,
    limit: { intervalMs: periodMs / count, burst },
    windowSeconds: Math.max(1, Math.round(periodMs / 1000)),
    match(method, path) {
      if (methods.size > 0 && !methods.has(method)) return undefined;
      if (matchers.length === 0) return path;
      for (const m of matchers) {
        const hit = m(path);
        if (hit !== undefined) return hit;
      }
      return undefined;
    },
  };
}
