/**
 * What the config says about routes beyond their schema: how a route's match
 * conditions combine with its service's, how many conditions a match holds (its
 * precedence), and routes that can never match because an earlier one takes all
 * their requests (`velocity validate` warns). The routing table (proxy/route-table.ts)
 * builds on the first two.
 */
import type { MatchConfig } from './schema/routes.ts';
import type { ServiceConfig } from './schema/service.ts';

/** A route's conditions on top of its service's: both must hold (route values win on the same key). */
export function mergeMatch(service: MatchConfig | undefined, route: MatchConfig | undefined): MatchConfig | undefined {
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

/** How many conditions a match holds: a route with more is tried first. */
export function conditionCount(match: MatchConfig | undefined): number {
  if (!match) return 0;
  const flags = [match.methods, match.client_ip, match.path_regex].filter((c) => c !== undefined).length;
  return flags + Object.keys(match.headers ?? {}).length + Object.keys(match.query ?? {}).length;
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
