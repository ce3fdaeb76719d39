/**
 * Host then path routing. Host patterns: exact names beat `*.suffix` wildcards
 * (longest suffix first), which beat `*` (the default). Within the chosen host
 * group the longest matching path prefix wins; a prefix matches on segment
 * boundaries, so `/api` takes `/api` and `/api/x` but not `/apix`. Among equal
 * prefixes a route with more conditions (method, header, query, client IP, path
 * regex: `rank`) comes first, then the order of the file.
 */
import type { PickRequest } from '../balancer/policy.ts';

export interface Route<T> {
  hosts: readonly string[];
  paths: readonly string[];
  target: T;
  /** Further conditions; absent for a plain host + path route (which costs nothing more). */
  when?: ((request: PickRequest) => boolean) | undefined;
  /** How many conditions `when` holds: more conditions rank first among equal prefixes. */
  rank?: number;
}

interface PathEntry<T> {
  prefix: string;
  target: T;
  when: ((request: PickRequest) => boolean) | undefined;
  rank: number;
  order: number;
}

export class Router<T> {
  private readonly exact = new Map<string, PathEntry<T>[]>();
  private readonly wildcards: { suffix: string; entries: PathEntry<T>[] }[] = [];
  private fallback: PathEntry<T>[] = [];
  /**
   * The last Host asked for and the route groups it selects, in the order they are tried: most requests
   * on a connection, often on the whole listener, carry the same Host, and comparing it with the last
   * one costs less than lower-casing it and hashing the copy for the lookup.
   */
  private lastHost: string | undefined;
  private lastGroups: readonly PathEntry<T>[][] = [];

  constructor(routes: readonly Route<T>[]) {
    const wild = new Map<string, PathEntry<T>[]>();
    let order = 0;
    for (const route of routes) {
      for (const rawHost of route.hosts) {
        const host = rawHost.toLowerCase();
        let list: PathEntry<T>[];
        if (host === '*') list = this.fallback;
        else if (host.startsWith('*.')) {
          const suffix = host.slice(1);
          list = wild.get(suffix) ?? [];
          wild.set(suffix, list);
        } else {
          list = this.exact.get(host) ?? [];
          this.exact.set(host, list);
        }
        for (const prefix of route.paths) list.push({ prefix: normalizePrefix(prefix), target: route.target, when: route.when, rank: route.rank ?? 0, order: order++ });
      }
    }
    for (const [suffix, entries] of wild) this.wildcards.push({ suffix, entries });
    this.wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
    const byLength = (a: PathEntry<T>, b: PathEntry<T>) => b.prefix.length - a.prefix.length || b.rank - a.rank || a.order - b.order;
    for (const list of this.exact.values()) list.sort(byLength);
    for (const w of this.wildcards) w.entries.sort(byLength);
    this.fallback.sort(byLength);
  }

  /**
   * `host` is the Host header (port and trailing dot ignored); `path` may carry a query.
   * Without `request`, routes with conditions are passed over.
   */
  match(host: string | undefined, path: string, request?: PickRequest): T | undefined {
    let groups = this.lastGroups;
    if (host !== this.lastHost || groups.length === 0) {
      groups = this.groupsFor(normalizeHost(host));
      this.lastHost = host;
      this.lastGroups = groups;
    }
    for (let i = 0; i < groups.length; i++) {
      const hit = matchPath(groups[i] as PathEntry<T>[], path, request);
      if (hit !== undefined) return hit;
    }
    return undefined;
  }

  /** The route groups a host name selects: its exact name, the wildcards it falls under (longest first), the default. */
  private groupsFor(name: string | undefined): PathEntry<T>[][] {
    const groups: PathEntry<T>[][] = [];
    const exact = name ? this.exact.get(name) : undefined;
    if (exact) groups.push(exact);
    if (name) for (const w of this.wildcards) if (name.endsWith(w.suffix) && name.length > w.suffix.length) groups.push(w.entries);
    groups.push(this.fallback);
    return groups;
  }
}

function normalizePrefix(prefix: string): string {
  return prefix.length > 1 && prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
}

export function normalizeHost(host: string | undefined): string | undefined {
  if (!host) return undefined;
  let name = host.toLowerCase();
  if (name.startsWith('[')) {
    const end = name.indexOf(']');
    return end > 0 ? name.slice(0, end + 1) : name;
  }
  const colon = name.indexOf(':');
  if (colon >= 0) name = name.slice(0, colon);
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

function matchPath<T>(entries: readonly PathEntry<T>[], path: string, request: PickRequest | undefined): T | undefined {
  for (const e of entries) {
    if (e.prefix !== '/') {
      if (!path.startsWith(e.prefix)) continue;
      const next = path.charCodeAt(e.prefix.length);
      // end of path, '/', '?' or '#'
      if (!(Number.isNaN(next) || next === 47 || next === 63 || next === 35)) continue;
    }
    if (e.when === undefined) return e.target;
    if (request && e.when(request)) return e.target;
  }
  return undefined;
}
