/** Fleet mode: the fleet's members, and server changes that go to every instance through etcd. */
import type { FleetMember } from '../../fleet/member.ts';
import { addServer, removeServer, type SharedConfigEditor, setServerWeight } from '../../fleet/shared-edits.ts';
import { ServerChangeError } from '../../upstream/control-plane.ts';
import { AdminError, type AdminRoute } from '../router.ts';
import type { ServerChanges } from './services.ts';

/** etcd did not take the write (no leader, unreachable): 503, never an internal error. */
function unavailable(err: unknown): never {
  if (err instanceof ServerChangeError || err instanceof AdminError) throw err;
  throw new AdminError(503, `etcd did not take the change (${(err as Error).message}); it may not have been made: check /api/v1/fleet and retry`);
}

/**
 * Server changes written to the shared config with compare-and-swap (add, remove, weight)
 * or to the fleet's server-state keys (drain, disable); the answer comes once this
 * instance runs the change, and every other instance applies it from its watch.
 */
export function fleetServerChanges(member: FleetMember, editor: SharedConfigEditor): ServerChanges {
  const appliedHere = async (written: Promise<number>) => {
    const revision = await written.catch(unavailable);
    const result = await member.applied(revision);
    if (result.applied) return;
    throw new ServerChangeError(
      409,
      result.refused
        ? `written to etcd at revision ${revision}, but this instance refused the resulting config: ${result.refused.join('; ')}`
        : `written to etcd at revision ${revision}, but this instance has not applied it yet (see /api/v1/fleet)`,
    );
  };
  return {
    add: (service, server) => appliedHere(editor.apply(addServer(service, server))),
    remove: (service, server) => appliedHere(editor.apply(removeServer(service, server))),
    change: async (service, server, change) => {
      if (change.weight !== undefined) await appliedHere(editor.apply(setServerWeight(service, server, change.weight)));
      if (change.state !== undefined && !(await member.setServerState(service, server, change.state).catch(unavailable))) {
        throw new ServerChangeError(404, `service "${service}" has no server "${server}"`, 'server');
      }
    },
  };
}

export function fleetRoutes(member: FleetMember): AdminRoute[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/fleet',
      mutates: false,
      summary: 'The fleet: every instance registered in etcd with its revision, health and rates; this instance’s link to etcd',
      handle: async () => {
        const { instances, fresh } = await member.members();
        return { self: member.id, etcd: member.etcd, revision: member.revision ?? null, listing: fresh ? 'current' : 'last known (etcd unreachable)', instances };
      },
    },
  ];
}
