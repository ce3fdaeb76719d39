/** Several Velocity processes on one config (shared state through Redis), and calls to their admin APIs. */
import { request } from 'undici';
import { CLI, type Cleanup, startVelocityProcess, type VelocityProcess } from './velocity.ts';

/** The admin token the configs of these instances use. */
export const ADMIN_TOKEN = 'shared-state-token-0123456789';

export interface SharedInstance {
  process: VelocityProcess;
  /** The admin API's base URL. */
  admin: string;
}

/** `count` processes of the source CLI (no build needed) from one YAML text with `admin: { listen: "127.0.0.1:0", token: ADMIN_TOKEN }`. */
export function startSharedInstances(t: Cleanup, yaml: string, count: number): Promise<SharedInstance[]> {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const process = await startVelocityProcess(t, yaml, { bin: CLI });
      const port = (await process.logs.waitFor(/"admin":"127\.0\.0\.1:(\d+)"/))[1];
      return { process, admin: `http://127.0.0.1:${port}` };
    }),
  );
}

/** An authorized admin call; `body` is the parsed JSON answer ({} when it is not JSON, as /metrics). */
export async function adminCall(base: string, method: 'POST' | 'DELETE' | 'GET', path: string, body?: unknown) {
  const res = await request(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {}
  return { status: res.statusCode, text, body: parsed };
}
