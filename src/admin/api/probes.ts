/**
 * /livez and /readyz on the admin listener, for what runs in front of Velocity: Kubernetes
 * probes, cloud balancers, HAProxy `option httpchk`, keepalived's HTTP_GET. Readable without
 * the token (probes carry no secrets), so they answer only a status and short reasons.
 */
import type { Config } from '../../config/schema/root.ts';
import { type Readiness, readiness } from '../../upstream/readiness.ts';
import type { ServiceRuntime } from '../../upstream/service.ts';
import type { AdminRoute } from '../router.ts';
import { sendJson } from '../server.ts';

/** How long a data-path thread has to answer a liveness ping. */
const THREAD_PING_TIMEOUT_MS = 2_000;

export interface ProbesDeps {
  config(): Config;
  services(): Iterable<ServiceRuntime>;
  /** Whether Velocity's listeners are open (false once shutdown closes them). */
  listening(): boolean;
  /** Set from the moment a shutdown starts: readiness fails first, while requests are still served. */
  draining(): boolean;
  /** The data-path threads whose event loop did not answer a ping in time (none without threads). */
  silentThreads(timeoutMs: number): Promise<number[]>;
}

export function currentReadiness(deps: ProbesDeps): Readiness {
  return readiness(deps.services(), deps.config().probes.ready_when, { draining: deps.draining(), listening: deps.listening() });
}

export function probeRoutes(deps: ProbesDeps): AdminRoute[] {
  return [
    {
      method: 'GET',
      path: '/livez',
      mutates: false,
      public: true,
      summary: 'Liveness: 200 while the process and every data-path thread answer; 503 naming the threads that do not',
      handle: async ({ res }) => {
        const silent = await deps.silentThreads(THREAD_PING_TIMEOUT_MS);
        if (silent.length === 0) sendJson(res, 200, { status: 'live' });
        else sendJson(res, 503, { status: 'not live', reasons: [`data-path thread ${silent.join(', ')} did not answer within ${THREAD_PING_TIMEOUT_MS} ms`] });
      },
    },
    {
      method: 'GET',
      path: '/readyz',
      mutates: false,
      public: true,
      summary: 'Readiness: 200 when the config is loaded, listeners are open and services have available servers (probes.ready_when); 503 while shutting down',
      handle: ({ res }) => {
        const { ready, reasons } = currentReadiness(deps);
        sendJson(res, ready ? 200 : 503, ready ? { status: 'ready' } : { status: 'not ready', reasons });
      },
    },
  ];
}
