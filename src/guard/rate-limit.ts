/** Rate-limit rules compiled: which requests a rule counts, under what key, and its GCRA limit. */

import type { PickRequest } from '../balancer/policy.ts';
import type { RateLimitRule } from '../config/schema/traffic.ts';
import type { Limit } from './gcra.ts';

export interface CompiledRule {
  /** Shown in the RateLimit headers. */
  name: string;
  /** Unique across global and service rules: keys of two services' rules never mix. */
  id: string;
  rule: RateLimitRule;
  limit: Limit;
  /** The RateLimit-Policy member (`"name";q=COUNT;w=SECONDS`). */
  policy: string;
  /** The key this request is counted under, or undefined when the rule does not apply to it. */
  keyFor(request: PickRequest, path: string): string | undefined;
}

function globToRegExp(glob: string): RegExp {
  const source = glob
    .split('**')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*'))
    .join('.*');
  return new RegExp(`^${source}$`);
}

const UNRESERVED = /[A-Za-z0-9._~-]/;

/**
 * The path as rules see it: no query, unreserved characters percent-decoded, `//`
 * collapsed and `.`/`..` resolved — so `/api/./%6Cogin` counts as `/api/login`.
 */
export function normalizePath(url: string): string {
  const q = url.indexOf('?');
  let path = q >= 0 ? url.slice(0, q) : url;
  if (path.includes('%'))
    path = path.replace(/%([0-9A-Fa-f]{2})/g, (m, hex: string) =>
      UNRESERVED.test(String.fromCharCode(Number.parseInt(hex, 16))) ? String.fromCharCode(Number.parseInt(hex, 16)) : m.toUpperCase(),
    );
  if (!/\/\/|\/\.\.?(\/|$)/.test(path)) return path;
  const out: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(segment);
  }
  return `/${out.join('/')}${path.endsWith('/') && out.length > 0 ? '/' : ''}`;
}

export function compileRule(rule: RateLimitRule, index: number, scope: string): CompiledRule {
  const { count, periodMs } = rule.rate;
  const burst = rule.burst ?? Math.max(1, Math.floor((count * 1000) / periodMs));
  const matchers = rule.paths.map((p): ((path: string) => string | undefined) => {
    if (!p.includes('*')) return (path) => (path.startsWith(p) ? p : undefined);
    const re = globToRegExp(p);
    return (path) => (re.test(path) ? p : undefined);
  });
  const methods = new Set(rule.methods);
  const match = (method: string, path: string): string | undefined => {
    if (methods.size > 0 && !methods.has(method)) return undefined;
    // Without patterns every path is its own endpoint.
    if (matchers.length === 0) return path;
    for (const m of matchers) {
      const hit = m(path);
      if (hit !== undefined) return hit;
    }
    return undefined;
  };
  const name = rule.name ?? `${scope}-${index}`;
  const id = `${scope}/${name}`;
  return {
    name,
    id,
    rule,
    limit: { intervalMs: periodMs / count, burst },
    policy: `"${name}";q=${count};w=${Math.max(1, Math.round(periodMs / 1000))}`,
    keyFor(request, path) {
      const matched = match(request.method, path);
      if (matched === undefined) return undefined;
      let key = id;
      // Indexed: the config is frozen, and for-of over a frozen array allocates its iterator per request.
      for (let k = 0; k < rule.key.length; k++) {
        const part = rule.key[k] as (typeof rule.key)[number];
        if (part === 'client_ip') key += `|${request.clientIp}`;
        // The endpoint is the pattern that matched: every path under a prefix or glob counts together.
        else if (part === 'endpoint') key += `|${request.method} ${matched}`;
        else {
          // Like nginx and Envoy, a request without the header is not counted by this rule.
          const value = request.header(part.slice('header:'.length));
          if (value === undefined || value === '') return undefined;
          key += `|${value}`;
        }
      }
      return key;
    },
  };
}
