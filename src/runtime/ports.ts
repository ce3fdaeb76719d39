/**
 * Every listener binds with SO_REUSEPORT, so a new Velocity can start on the same ports before
 * the old one stops (`velocity start --takeover`). A normal start must still refuse a port that
 * is taken — by anything, another Velocity included — so it first binds each address once
 * without SO_REUSEPORT, which fails while any socket holds it.
 */
import { createServer } from 'node:net';
import type { Config } from '../config/schema/root.ts';
import type { ListenAddress } from '../config-fields.ts';
import { ListenError } from '../proxy/listener.ts';

/** The fixed addresses a config listens on (port 0 is always free). */
export function fixedAddresses(config: Config): ListenAddress[] {
  const all = [
    ...config.listen,
    ...config.listeners.map((l) => l.listen),
    ...config.services.flatMap((s) => (s.listen ? [s.listen] : [])),
    ...(config.admin.enabled ? [config.admin.listen] : []),
  ];
  return all.filter((a) => a.port !== 0);
}

/** Throws ListenError (as a real bind would) for the first address something else holds. */
export async function assertPortsFree(config: Config): Promise<void> {
  for (const address of fixedAddresses(config)) {
    const probe = createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once('error', (err) => reject(new ListenError(address, err)));
      probe.listen({ host: address.host, port: address.port, exclusive: true }, () => probe.close(() => resolve()));
    });
  }
}
