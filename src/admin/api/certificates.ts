/** ACME certificates: names, issuer, expiry, last attempt and error; `renew now`. */
import type { AutomaticHttps } from '../../proxy/acme/automatic-https.ts';
import { AdminError, type AdminRoute } from '../router.ts';

export function certificatesRoutes(https: AutomaticHttps): AdminRoute[] {
  const known = (name: string) => {
    const found = https.status(name.toLowerCase());
    if (found.length === 0) throw new AdminError(404, `no ACME-managed certificate for "${name}"`, 'name');
    return found;
  };
  return [
    {
      method: 'GET',
      path: '/api/v1/certificates',
      mutates: false,
      summary: 'ACME-managed certificates: names, issuer, expiry, next renewal, last attempt and error',
      handle: () => ({ certificates: https.list() }),
    },
    {
      method: 'GET',
      path: '/api/v1/certificates/:name',
      mutates: false,
      summary: 'One ACME-managed name (one entry per acme block that manages it)',
      handle: ({ params }) => ({ certificates: known(params.name as string) }),
    },
    {
      method: 'POST',
      path: '/api/v1/certificates/:name/renew',
      mutates: true,
      summary: 'Renew now: orders a new certificate whatever its age; answers once the attempt ended (the old certificate stays in use if it failed)',
      handle: async ({ params }) => {
        known(params.name as string);
        const after = (await https.renewNow((params.name as string).toLowerCase())) ?? [];
        return { renewed: after.every((s) => s.last_error === null), certificates: after };
      },
    },
  ];
}
