/** Services and servers with their live state; add, remove, re-weight, drain, enable, disable. */
import { z } from 'zod';
import { type ServerConfig, serverObjectSchema } from '../../config/schema/service.ts';
import { positiveInt } from '../../config-fields.ts';
import { type MiddlewareConfig, middlewareView } from '../../middleware/registry.ts';
import type { DataPlane } from '../../runtime/data-plane.ts';
import { ADMIN_STATES, type AdminState, CIRCUIT_STATES } from '../../state/server-cells.ts';
import { isAvailable } from '../../upstream/availability.ts';
import type { ControlPlane, ServerEntry } from '../../upstream/control-plane.ts';
import { ServerChangeError, serverIdFor } from '../../upstream/control-plane.ts';

import type { ServiceRuntime } from '../../upstream/service.ts';
import { AdminError, type AdminRoute } from '../router.ts';

const addServerBody = serverObjectSchema;

const changeServerBody = z
  .strictObject({
    weight: positiveInt().optional(),
    state: z.enum(ADMIN_STATES, { error: `expected ${ADMIN_STATES.join(', ')}` }).optional(),
  })
  .refine((b) => b.weight !== undefined || b.state !== undefined, 'give weight and/or state');

/**
 * Where the API's server changes go: this instance's control plane, or in fleet mode the
 * shared config in etcd, which every instance then applies (admin/api/fleet.ts).
 */
export interface ServerChanges {
  add(service: string, server: ServerConfig): Promise<void> | void;
  change(service: string, server: string, change: { weight?: number | undefined; state?: AdminState | undefined }): Promise<void> | void;
  remove(service: string, server: string): Promise<void> | void;
}

/** Changes applied to this instance alone. */
export function localServerChanges(control: ControlPlane): ServerChanges {
  return {
    add: (service, server) => void control.addServer(service, server, 'api'),
    change: (service, server, change) => {
      if (change.weight !== undefined) control.setWeight(service, server, change.weight);
      if (change.state !== undefined) control.setAdminState(service, server, change.state);
    },
    remove: (service, server) => control.removeServer(service, server, 'removed through the admin API'),
  };
}

export interface ServicesApiDeps {
  control: ControlPlane;
  plane: DataPlane;
  /** Where changes go (default: this instance's control plane). */
  changes?: ServerChanges;
  /** The server ids of a service as the config file lists them (for divergence). */
  fileServers(service: string): Map<string, { url: string; weight: number }> | undefined;
}

function rethrow(err: unknown): never {
  if (err instanceof ServerChangeError) throw new AdminError(err.status, err.message, err.field);
  throw err;
}

/** Runs a change (sync or async); a refused one becomes its HTTP status. */
async function attempt(change: () => Promise<void> | void): Promise<void> {
  try {
    await change();
  } catch (err) {
    rethrow(err);
  }
}

/**
 * One server as the API shows it: config, live state from shared memory, and divergence
 * from the file. `fromFileServers` is the service's servers as the file lists them; callers
 * describing every server of a service look it up once and pass it.
 */
export function describeServer(deps: ServicesApiDeps, service: string, entry: ServerEntry, fromFileServers = deps.fileServers(service)) {
  const slot = entry.spec.slot;
  const cells = deps.control.state.server(slot);
  const live = deps.plane.service(service)?.servers.find((s) => s.slot === slot);
  const now = Date.now();
  const fromFile = fromFileServers?.get(entry.spec.id);
  const weight = cells.configuredWeight;
  const divergence: string[] = [];
  if (!fromFile) divergence.push(entry.source === 'config' ? 'not in the file' : `added by ${entry.source}`);
  else if (fromFile.weight !== weight) divergence.push(`weight ${weight} (file: ${fromFile.weight})`);
  if (cells.admin !== 0) divergence.push(`state ${ADMIN_STATES[cells.admin]}`);
  return {
    id: entry.spec.id,
    url: entry.spec.url,
    source: entry.source,
    state: entry.removeBy !== undefined ? 'removing' : ADMIN_STATES[cells.admin],
    available: live ? isAvailable(live, now) : false,
    health: {
      active: cells.activeUp ? 'up' : 'down',
      passive: now < cells.ejectedUntil ? 'ejected' : 'ok',
      ejected_until: now < cells.ejectedUntil ? new Date(cells.ejectedUntil).toISOString() : null,
    },
    circuit: CIRCUIT_STATES[cells.circuitState] ?? 'closed',
    weight,
    effective_weight: live ? Math.round(live.weight * 100) / 100 : weight,
    max_connections: cells.maxConnections,
    in_flight: cells.inFlight,
    requests: cells.requests,
    failures: cells.failures,
    latency_ms: Math.round(cells.ewma * 10) / 10,
    diverges_from_file: divergence.length > 0,
    divergence,
  };
}

/** The service's conditions, middleware and routes as the config gave them (options after defaults). */
function routingView(config: ServiceRuntime['config']) {
  const list = (m: readonly MiddlewareConfig[]) => m.map((x) => (x.module ? { module: x.module, options: x.options } : { [x.name]: middlewareView(x) }));
  return {
    match: config.match ?? null,
    middleware: list(config.middleware),
    routes: config.routes.map((r, i) => ({ name: r.name ?? String(i), paths: r.paths ?? config.paths, match: r.match ?? null, middleware: list(r.middleware) })),
  };
}

export function servicesRoutes(deps: ServicesApiDeps): AdminRoute[] {
  const changes = deps.changes ?? localServerChanges(deps.control);
  const describeService = (name: string) => {
    const runtime = deps.plane.service(name);
    const fromFile = deps.fileServers(name);
    return {
      name,
      policy: runtime?.config.policy.name,
      hosts: runtime?.config.hosts,
      paths: runtime?.config.paths,
      ...(runtime ? routingView(runtime.config) : {}),
      queue_length: runtime ? deps.plane.queueFor(runtime).length : 0,
      servers: deps.control.servers(name).map((e) => describeServer(deps, name, e, fromFile)),
    };
  };
  const known = (name: string) => {
    if (!deps.control.serviceNames().includes(name)) throw new AdminError(404, `no service named "${name}"`, 'service');
    return name;
  };
  return [
    {
      method: 'GET',
      path: '/api/v1/services',
      mutates: false,
      summary: 'Every service with its servers and their live state',
      handle: () => ({ services: deps.control.serviceNames().map(describeService) }),
    },
    {
      method: 'GET',
      path: '/api/v1/services/:service',
      mutates: false,
      summary: 'One service with its servers and their live state',
      handle: ({ params }) => describeService(known(params.service as string)),
    },
    {
      method: 'POST',
      path: '/api/v1/services/:service/servers',
      mutates: true,
      summary: 'Add a server; it starts receiving at once (slow start applies)',
      body: addServerBody,
      status: 201,
      handle: async ({ params, body }) => {
        const service = known(params.service as string);
        const server = body as z.output<typeof addServerBody>;
        await attempt(() => changes.add(service, server));
        const id = serverIdFor(server);
        const entry = deps.control.servers(service).find((e) => e.spec.id === id && e.removeBy === undefined);
        return entry ? describeServer(deps, service, entry) : { id };
      },
    },
    {
      method: 'PATCH',
      path: '/api/v1/services/:service/servers/:server',
      mutates: true,
      summary: `Change a server’s weight and/or state (${ADMIN_STATES.join(', ')})`,
      body: changeServerBody,
      handle: async ({ params, body }) => {
        const service = known(params.service as string);
        await attempt(() => changes.change(service, params.server as string, body as z.output<typeof changeServerBody>));
        const entry = deps.control.servers(service).find((e) => e.spec.id === params.server && e.removeBy === undefined);
        return entry ? describeServer(deps, service, entry) : {};
      },
    },
    {
      method: 'DELETE',
      path: '/api/v1/services/:service/servers/:server',
      mutates: true,
      summary: 'Remove a server: it drains first and is removed when idle or at drain_timeout',
      status: 202,
      handle: async ({ params }) => {
        const service = known(params.service as string);
        await attempt(() => changes.remove(service, params.server as string));
        return { removing: params.server };
      },
    },
  ];
}
