/** The dynamic blocklist over the admin API: list, add (optionally for a time), remove. */
import { z } from 'zod';
import { duration } from '../../config-fields.ts';
import { type Blocklist, BlocklistError, BlocklistUnavailableError } from '../../guard/blocklist.ts';
import { AdminError, type AdminRoute } from '../router.ts';

const addBody = z.strictObject({
  /** An address or CIDR range. */
  cidr: z.string({ error: 'expected an IP address or CIDR range' }),
  /** How long; absent or 0 = until removed. */
  ttl: duration().optional(),
  reason: z.string().max(200, 'at most 200 characters').optional(),
});

const rethrow = (err: unknown): never => {
  if (err instanceof BlocklistError) throw new AdminError(400, err.message, err.field);
  if (err instanceof BlocklistUnavailableError) throw new AdminError(503, err.message);
  throw err;
};

export function blocklistRoutes(blocklist: Blocklist): AdminRoute[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/blocklist',
      mutates: false,
      summary: 'Blocked addresses and ranges (operator entries and auto-bans) with their expiry',
      handle: () => ({ entries: blocklist.list() }),
    },
    {
      method: 'POST',
      path: '/api/v1/blocklist',
      mutates: true,
      summary: 'Block an address or CIDR range, optionally for a time (ttl: 10m); shared by every instance with a Redis state store or in a fleet',
      body: addBody,
      status: 201,
      handle: async ({ body }) => {
        const b = body as z.output<typeof addBody>;
        return blocklist.add(b.cidr, b.ttl, b.reason ?? 'added through the admin API').catch(rethrow);
      },
    },
    {
      method: 'DELETE',
      path: '/api/v1/blocklist/:cidr',
      mutates: true,
      summary: 'Unblock an address or range (URL-encode the slash: 10.0.0.0%2F8)',
      handle: async ({ params }) => {
        if (!(await blocklist.remove(params.cidr as string).catch(rethrow))) throw new AdminError(404, `"${params.cidr}" is not blocked`, 'cidr');
        return { removed: params.cidr };
      },
    },
  ];
}
