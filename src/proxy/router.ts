/**
 * Host then path routing. Host patterns: exact names beat `*.suffix` wildcards
 * (longest suffix first), which beat `*` (the default). Within the chosen host
 * group the longest matching path prefix wins; a prefix matches on segment
 * boundaries, so `/api` takes `/api` and `/api/x` but not `/apix`.
 */

export interface Route<T> {
  hosts: readonly string[];
  paths: readonly string[];
  target: T;
}

interface PathEntry<T> {
  prefix: string;
  target: T;
}

export class Router<T> {
  private readonly exact = new Map<string, PathEntry<T>[]>();
  private readonly wildcards: { suffix: string; entries: PathEntry<T>[] }[] = [];
  private fallback: PathEntry<T>[] = [];

  constructor(routes: readonly Route<T>[]) {
    const wild = new Map<string, PathEntry<T>[]>();
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
        for (const prefix of route.paths) list.push({ prefix: normalizePrefix(prefix), target: route.target });
      }
    }
    for (const [suffix, entries] of wild) this.wildcards.push({ suffix, entries });
    this.wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
    const byLength = (a: PathEntry<T>, b: PathEntry<T>) => b.prefix.length - a.prefix.length;
    for (const list of this.exact.values()) list.sort(byLength);
    for (const w of this.wildcards) w.entries.sort(byLength);
    this.fallback.sort(byLength);
  }

  /** `host` is the Host header (port and trailing dot ignored); `path` may carry a query. */
  match(host: string | undefined, path: string): T | undefined {
    const name = normalizeHost(host);
    const exact = name ? this.exact.get(name) : undefined;
    if (exact) {
      const hit = matchPath(exact, path);
      if (hit !== undefined) return hit;
    }
    if (name) {
      for (const w of this.wildcards) {
        if (name.endsWith(w.suffix) && name.length > w.suffix.length) {
          const hit = matchPath(w.entries, path);
          if (hit !== undefined) return hit;
        }
      }
    }
    return matchPath(this.fallback, path);
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

function matchPath<T>(entries: readonly PathEntry<T>[], path: string): T | undefined {
  for (const e of entries) {
    if (e.prefix === '/') return e.target;
    if (path.startsWith(e.prefix)) {
      const next = path.charCodeAt(e.prefix.length);
      // end of path, '/', '?' or '#'
      if (Number.isNaN(next) || next === 47 || next === 63 || next === 35) return e.target;
    }
  }
  return undefined;
}
