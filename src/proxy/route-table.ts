/**
 * The routing table from the services: each service's own route (its hosts,
 * paths and `match`) and the routes inside it, with their conditions compiled
 * and their middleware chains built. Also the check `velocity validate` runs for
 * routes an earlier one shadows.
 */
import type { PickRequest } from '../balancer/policy.ts';
import { CidrSet, parseCidr } from '../cidr.ts';
import type { MatchConfig } from '../config/schema/routes.ts';
import type { ServiceConfig } from '../config/schema/service.ts';
import { buildChain, type MiddlewareChain } from '../middleware/chain.ts';
import type { MiddlewareContext } from '../middleware/middleware.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import type { Route } from './router.ts';

/** What a request is routed to: a service, and the middleware of the route that matched. */
export interface RouteTarget {
  readonly service: ServiceRuntime;
  /** SERVICE or SERVICE/ROUTE. */
  readonly name: string;
  /** Undefined when the route has no middleware. */
  readonly chain: MiddlewareChain | undefined;
}

type Condition = (request: PickRequest, parts: { path: string; query: URLSearchParams | undefined }) => boolean;
type ValueCondition = NonNullable<MatchConfig['headers']>[string];

function valueTest(condition: ValueCondition): (value: string | null | undefined) => boolean {
  if (typeof condition === 'string') return (v) => v === condition;
  if ('present' in condition) return (v) => (v !== undefined && v !== null) === condition.present;
  const regex = new RegExp(condition.regex);
  return (v) => v !== undefined && v !== null && regex.test(v);
}

/** Conditions compiled to one test and their count; undefined when there are none. */
export function compileMatch(match: MatchConfig | undefined): { when: (request: PickRequest) => boolean; rank: number } | undefined {
  if (!match) return undefined;
  const tests: Condition[] = [];
  if (match.methods) {
    const methods = new Set(match.methods);
    tests.push((r) => methods.has(r.method));
  }
  for (const [name, condition] of Object.entries(match.headers ?? {})) {
    const test = valueTest(condition);
    tests.push((r) => test(r.header(name)));
  }
  const queryTests = Object.entries(match.query ?? {}).map(([name, condition]) => ({ name, test: valueTest(condition) }));
  for (const { name, test } of queryTests) tests.push((_r, parts) => test(parts.query?.get(name)));
  if (match.client_ip) {
    const set = new CidrSet(match.client_ip.map((c) => parseCidr(c) as NonNullable<ReturnType<typeof parseCidr>>));
    tests.push((r) => set.has(r.clientIp));
  }
  if (match.path_regex !== undefined) {
    const regex = new RegExp(match.path_regex);
    tests.push((_r, parts) => regex.test(parts.path));
  }
  if (tests.length === 0) return undefined;
  const needsQuery = queryTests.length > 0;
  return {
    rank: tests.length,
    when: (request) => {
      const url = request.url;
      const q = url.indexOf('?');
      const parts = { path: q < 0 ? url : url.slice(0, q), query: needsQuery ? new URLSearchParams(q < 0 ? '' : url.slice(q + 1)) : undefined };
      for (const test of tests) if (!test(request, parts)) return false;
      return true;
    },
  };
}

/** Every route of the HTTP services, in file order (the router sorts by precedence). */
export function buildRoutes(services: readonly ServiceRuntime[], context: MiddlewareContext): Route<RouteTarget>[] {
  const routes: Route<RouteTarget>[] = [];
  for (const service of services) {
    const cfg = service.config;
    const own = buildChain(cfg.middleware, context);
    routes.push({ hosts: cfg.hosts, paths: cfg.paths, target: { service, name: service.name, chain: own }, ...compileMatch(cfg.match) });
    cfg.routes.forEach((route, i) => {
      const chain = buildChain([...cfg.middleware, ...route.middleware], context);
      const match = compileMatch(mergeMatch(cfg.match, route.match));
      routes.push({ hosts: cfg.hosts, paths: route.paths ?? cfg.paths, target: { service, name: `${service.name}/${route.name ?? i}`, chain }, ...match });
    });
  }
  // A route with conditions listed before a plain one keeps its place: the router orders by prefix, rank, then this order.
  return routes;
}

/** A route's conditions on top of its service's: both must hold (route values win on the same key). */
function mergeMatch(service: MatchConfig | undefined, route: MatchConfig | undefined): MatchConfig | undefined {
  if (!service) return route;
  if (!route) return service;
  return {
    ...service,
    ...route,
    headers: service.headers || route.headers ? { ...service.headers, ...route.headers } : undefined,
    query: service.query || route.query ? { ...service.query, ...route.query } : undefined,
  };
}

interface Entry {
  path: PropertyKey[];
  label: string;
  hosts: readonly string[];
  prefixes: readonly string[];
  match: MatchConfig | undefined;
  rank: number;
  order: number;
}

const normalize = (p: string) => (p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p);

function conditionCount(match: MatchConfig | undefined): number {
  return compileMatch(match)?.rank ?? 0;
}

/** Whether every request `b` matches also meets `a` (a conservative check: false when unsure). */
function covers(a: MatchConfig | undefined, b: MatchConfig | undefined): boolean {
  if (!a) return true;
  if (a.methods && !b?.methods?.every((m) => a.methods?.includes(m))) return false;
  for (const kind of ['headers', 'query'] as const) {
    for (const [name, cond] of Object.entries(a[kind] ?? {})) {
      const other = b?.[kind]?.[name];
      if (other === undefined) return false;
      const samePresence = typeof cond === 'object' && 'present' in cond && cond.present && !(typeof other === 'object' && 'present' in other && !other.present);
      if (!samePresence && JSON.stringify(cond) !== JSON.stringify(other)) return false;
    }
  }
  if (a.client_ip && !b?.client_ip?.every((c) => a.client_ip?.includes(c))) return false;
  if (a.path_regex !== undefined && a.path_regex !== b?.path_regex) return false;
  return true;
}

/** Routes that can never match because an earlier one takes all their requests (`velocity validate` warns). */
export function shadowedRoutes(services: readonly ServiceConfig[]): { path: PropertyKey[]; message: string }[] {
  const entries: Entry[] = [];
  services.forEach((s, i) => {
    if (s.mode !== 'http') return;
    entries.push({
      path: ['services', i, 'paths'],
      label: `service ${s.name}`,
      hosts: s.hosts,
      prefixes: s.paths,
      match: s.match,
      rank: conditionCount(s.match),
      order: entries.length,
    });
    s.routes.forEach((r, j) => {
      const match = mergeMatch(s.match, r.match);
      entries.push({
        path: ['services', i, 'routes', j],
        label: `route ${s.name}/${r.name ?? j}`,
        hosts: s.hosts,
        prefixes: r.paths ?? s.paths,
        match,
        rank: conditionCount(match),
        order: entries.length,
      });
    });
  });
  const found: { path: PropertyKey[]; message: string }[] = [];
  for (const b of entries) {
    for (const host of b.hosts) {
      for (const prefix of b.prefixes.map(normalize)) {
        const by = entries.find(
          (a) =>
            a !== b &&
            (a.rank > b.rank || (a.rank === b.rank && a.order < b.order)) &&
            a.hosts.includes(host) &&
            a.prefixes.map(normalize).includes(prefix) &&
            covers(a.match, b.match),
        );
        if (by) found.push({ path: b.path, message: `${b.label} can never match host ${host} path ${prefix}: ${by.label} comes first and takes every such request` });
      }
    }
  }
  return found;
}
