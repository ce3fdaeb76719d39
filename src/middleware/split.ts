/**
 * Traffic split between services (nginx split_clients, Traefik weighted services,
 * Envoy weighted clusters): each request goes to a group by weight (a 5 % canary),
 * unless a rule sends it by header or cookie (`x-canary: 1`). Sticky when asked:
 * `ip` hashes the client address to a group, `cookie` remembers the group the
 * client first got in a cookie. Groups name services, so each has its own servers,
 * health checks and policy.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Middleware } from './middleware.ts';

const serviceName = z.string().regex(/^[a-zA-Z0-9][\w.-]*$/, 'a service name');

export const splitOptions = z.strictObject({
  groups: z
    .array(z.strictObject({ service: serviceName, weight: z.number().nonnegative() }))
    .min(1)
    .refine((g) => g.some((x) => x.weight > 0), { message: 'at least one group needs a weight above 0' }),
  /** Checked first, in order: a request with this header (or cookie) value goes to that service. */
  rules: z
    .array(
      z
        .strictObject({ header: z.string().optional(), cookie: z.string().optional(), value: z.string().optional(), service: serviceName })
        .refine((r) => (r.header === undefined) !== (r.cookie === undefined), { message: 'give either header or cookie' }),
    )
    .default([]),
  sticky: z.enum(['off', 'ip', 'cookie']).default('off'),
  cookie_name: z
    .string()
    .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/)
    .default('velocity_split'),
});

export function split(o: z.output<typeof splitOptions>): Middleware {
  const total = o.groups.reduce((n, g) => n + g.weight, 0);
  const names = new Set(o.groups.map((g) => g.service));
  const byPoint = (point: number): string => {
    let left = point * total;
    // Indexed: options come from the frozen config, and for-of over a frozen array allocates its iterator per request.
    for (let k = 0; k < o.groups.length; k++) {
      const g = o.groups[k] as (typeof o.groups)[number];
      left -= g.weight;
      if (left < 0) return g.service;
    }
    return (o.groups.findLast((g) => g.weight > 0) as { service: string }).service;
  };
  return {
    request(req) {
      for (let k = 0; k < o.rules.length; k++) {
        const rule = o.rules[k] as (typeof o.rules)[number];
        const value = rule.header !== undefined ? req.header(rule.header) : req.cookie(rule.cookie as string);
        if (value !== undefined && (rule.value === undefined || value === rule.value)) {
          req.useService(rule.service);
          return undefined;
        }
      }
      if (o.sticky === 'cookie') {
        const remembered = req.cookie(o.cookie_name);
        if (remembered !== undefined && names.has(remembered)) {
          req.useService(remembered);
          return undefined;
        }
        const chosen = byPoint(Math.random());
        req.addResponseHeader('set-cookie', `${o.cookie_name}=${chosen}; Path=/; HttpOnly; SameSite=Lax`);
        req.useService(chosen);
        return undefined;
      }
      if (o.sticky === 'ip') {
        const point = createHash('sha256').update(req.clientIp).digest().readUInt32BE(0) / 0x1_0000_0000;
        req.useService(byPoint(point));
        return undefined;
      }
      req.useService(byPoint(Math.random()));
      return undefined;
    },
  };
}

/** Services a split names (checked to exist when the config is loaded). */
export function splitServices(o: z.output<typeof splitOptions>): string[] {
  return [...o.groups.map((g) => g.service), ...o.rules.map((r) => r.service)];
}
