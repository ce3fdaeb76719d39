/**
 * The routing table from the services: each service's own route (its hosts,
 * paths and `match`) and the routes inside it, with their conditions compiled
 * and their middleware chains built. How a route's conditions combine with its
 * service's, and how many there are (its precedence), is the config's
 * (config/route-checks.ts), shared with the check for shadowed routes.
 */
import type { PickRequest } from '../balancer/policy.ts';
import { CidrSet, parseCidr } from '../cidr.ts';
import { conditionCount, mergeMatch } from '../config/route-checks.ts';
import type { MatchConfig } from '../config/schema/routes.ts';
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
    rank: conditionCount(match),
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
