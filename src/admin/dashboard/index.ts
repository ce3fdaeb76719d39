/** The dashboard's admin routes: the page and its assets, and the live snapshot stream. */
import { type LiveDeps, liveRoutes } from '../api/live.ts';
import type { AdminRoute } from '../router.ts';
import { staticRoutes } from './static.ts';

export function dashboardRoutes(deps: LiveDeps): AdminRoute[] {
  return [...staticRoutes(), ...liveRoutes(deps)];
}
