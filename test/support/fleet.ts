/**
 * Fleet tests: Velocity instances in process on a shared config in a real etcd, the admin
 * calls they make, and TCP forwarders that cut one instance off from etcd.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, createServer as createTcpServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { type Agent, request } from 'undici';
import type { EtcdConfigStore } from '../../src/config/etcd-source.ts';
import type { EtcdSourceConfig } from '../../src/config/schema/fleet.ts';
import { FleetMember, type FleetMemberDeps } from '../../src/fleet/member.ts';
import { silentLogger } from '../../src/observe/logger.ts';
import { start, type Velocity } from '../../src/runtime/instance.ts';
import { watchLogger } from './internal-errors.ts';
import type { Cleanup } from './velocity.ts';

export const TOKEN = 'fleet-test-token-0123456789';

export interface Backend {
  name: string;
  url: string;
  server: Server;
}

/** An HTTP backend on loopback that answers its name. */
export async function backend(t: Cleanup, name: string): Promise<Backend> {
  const server = createServer((req, res) => {
    req.resume();
    res.end(name);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => server.close(r)));
  server.keepAliveTimeout = 500;
  const { port } = server.address() as { port: number };
  return { name, url: `http://127.0.0.1:${port}`, server };
}

/** The fleet's shared config: one service `web` with these servers. */
export const sharedConfig = (servers: string[], extra = '') => `# the fleet's shared config
services:
  - name: web
    health: { interval: 1s }
    servers:
${servers.map((s) => `      - ${s}`).join('\n')}
${extra}`;

export interface Member {
  name: string;
  /** Its log lines (warn and up; info too when started with `level: 'info'`). */
  logs: string[];
  velocity: Velocity;
  admin: string;
  url: string;
}

/** Starts an instance from a local file that names the etcd source; its internal errors go to `internal`. */
export async function startMember(
  t: Cleanup,
  dir: string,
  name: string,
  etcd: { endpoints: string[]; prefix: string },
  internal: string[],
  level: 'warn' | 'info' = 'warn',
): Promise<Member> {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `# instance ${name}: what is its own; the rest comes from etcd
listen: 127.0.0.1:0
admin: { listen: 127.0.0.1:0, token: ${TOKEN} }
config_source:
  etcd:
    endpoints: [${etcd.endpoints.join(', ')}]
    prefix: ${etcd.prefix}
    id: ${name}
    lease_ttl: 3s
    report_interval: 1s
`,
  );
  const logs: string[] = [];
  const logger = pino({ level }, { write: (line: string) => logs.push(line) });
  const velocity = await start(file, { logger: watchLogger(logger, internal) });
  t.after(() => velocity.close());
  return { name, logs, velocity, admin: `http://127.0.0.1:${velocity.adminAddress?.port}`, url: `http://127.0.0.1:${velocity.address.port}` };
}

/**
 * A fleet member alone, without an instance around it: etcd is real, the seams are its
 * reload (answers ok at once unless given) and the server states it sets. Its internal errors go to `internal`.
 */
export function bareMember(
  store: EtcdConfigStore,
  source: EtcdSourceConfig,
  internal: string[],
  seams: Partial<Pick<FleetMemberDeps, 'reload' | 'setServerState'>> = {},
): FleetMember {
  return new FleetMember(
    {
      store,
      source,
      log: watchLogger(silentLogger(), internal),
      version: 'test',
      reload: seams.reload ?? (async () => ({ ok: true, at: new Date().toISOString() })),
      facts: () => ({ listen: [], admin: undefined, threads: 1, draining: false, requests: 0, errors: 0 }),
      hasServer: () => true,
      setServerState: seams.setServerState ?? (() => undefined),
    },
    source.id ?? 'bare',
  );
}

/** An admin API call with the test token; the answer's JSON (or `{ text }`). */
export async function call(agent: Agent, method: string, url: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await request(url, {
    dispatcher: agent,
    method: method as 'GET',
    headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: text.startsWith('{') ? JSON.parse(text) : { text } };
}

export async function body(agent: Agent, url: string): Promise<{ status: number; text: string }> {
  const res = await request(url, { dispatcher: agent });
  return { status: res.statusCode, text: await res.body.text() };
}

/** The servers of `web` on an instance, as its admin API lists them (removing ones left out). */
export const servers = async (agent: Agent, m: Member) =>
  ((await call(agent, 'GET', `${m.admin}/api/v1/services/web`)).json.servers as { id: string; state: string }[]).filter((s) => s.state !== 'removing');

export const serverIds = async (agent: Agent, m: Member) => (await servers(agent, m)).map((s) => s.id);

export type FleetView = {
  self: string;
  etcd: { reachable: boolean; error?: string };
  revision: number | null;
  listing: string;
  instances: { id: string; config: { revision: number | null; ok: boolean; errors?: string[] } }[];
};
export const fleetView = async (agent: Agent, m: Member) => (await call(agent, 'GET', `${m.admin}/api/v1/fleet`)).json as unknown as FleetView;

export interface EtcdLink {
  /** The forwarders' endpoints, to give the instance instead of etcd's. */
  endpoints: string[];
  /** Resets every connection and refuses new ones: the instance is partitioned from etcd. */
  cut(): void;
  /**
   * Bytes stop flowing both ways on every connection, and new ones are accepted but never
   * reach etcd: nothing is reset, as when a network path blackholes.
   */
  hang(): void;
  /** Lets new connections through again; hung ones are reset (as a blackhole's would time out). */
  restore(): void;
}

/** TCP forwarders to every etcd member: cutting or hanging them partitions one instance from etcd while the rest of the fleet still reaches it. */
export async function etcdLink(t: Cleanup, targets: string[]): Promise<EtcdLink> {
  let mode: 'open' | 'cut' | 'hung' = 'open';
  const pairs = new Set<{ client: Socket; upstream: Socket | undefined }>();
  const destroyAll = () => {
    for (const { client, upstream } of pairs) {
      client.destroy();
      upstream?.destroy();
    }
    pairs.clear();
  };
  const endpoints = await Promise.all(
    targets.map(async (target) => {
      const { hostname, port } = new URL(target);
      const server = createTcpServer((client) => {
        if (mode === 'cut') {
          client.destroy();
          return;
        }
        // A hung path: the connection is accepted and then nothing comes back.
        const upstream = mode === 'open' ? connect(Number(port), hostname) : undefined;
        const pair = { client, upstream };
        pairs.add(pair);
        const drop = () => {
          client.destroy();
          upstream?.destroy();
          pairs.delete(pair);
        };
        client.on('error', drop).on('close', drop);
        upstream?.on('error', drop).on('close', drop);
        if (upstream) client.pipe(upstream).pipe(client);
        else client.resume();
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      t.after(() => {
        destroyAll();
        return new Promise((r) => server.close(r));
      });
      return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    }),
  );
  return {
    endpoints,
    cut() {
      mode = 'cut';
      destroyAll();
    },
    hang() {
      mode = 'hung';
      for (const { client, upstream } of pairs) {
        if (!upstream) continue;
        client.unpipe(upstream);
        upstream.unpipe(client);
        // Read and drop what arrives: the peer's writes neither fail nor come through.
        client.resume();
        upstream.resume();
      }
    },
    restore() {
      mode = 'open';
      destroyAll();
    },
  };
}
