/**
 * The probes on the traffic port, at the paths `probes.listener_paths` names (like HAProxy's
 * monitor-uri), for balancers that can only reach the listeners. Answered before routing, guards
 * and the access log; read from the running config, so a reload turns them on or off.
 */
import { Buffer } from 'node:buffer';
import type { Config } from '../config/schema/root.ts';
import { readiness } from '../upstream/readiness.ts';
import type { ServiceRuntime } from '../upstream/service.ts';
import type { ProxyResponse, RequestListener } from './proxy-message.ts';

/** What the probes read from the serving thread's data plane. */
export interface ProbeSource {
  readonly currentTopology: { readonly config: Config } | undefined;
  readonly draining: boolean;
  allServices(): Iterable<ServiceRuntime>;
}

export function withListenerProbes(plane: ProbeSource, next: RequestListener): RequestListener {
  return (req, res) => {
    const probes = plane.currentTopology?.config.probes;
    const paths = probes?.listener_paths;
    if (probes && (paths?.live !== undefined || paths?.ready !== undefined)) {
      const url = req.url ?? '/';
      const query = url.indexOf('?');
      const path = query < 0 ? url : url.slice(0, query);
      if (path === paths.live) return answer(res, 200, { status: 'live' });
      if (path === paths.ready) {
        const { ready, reasons } = readiness(plane.allServices(), probes.ready_when, { draining: plane.draining, listening: true });
        return answer(res, ready ? 200 : 503, ready ? { status: 'ready' } : { status: 'not ready', reasons });
      }
    }
    next(req, res);
  };
}

function answer(res: ProxyResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
