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
  restore(): void;
}

/** TCP forwarders to every etcd member: cutting them partitions one instance from etcd while the rest of the fleet still reaches it. */
export async function etcdLink(t: Cleanup, targets: string[]): Promise<EtcdLink> {
  let open = true;
  const sockets = new Set<Socket>();
  const endpoints = await Promise.all(
    targets.map(async (target) => {
      const { hostname, port } = new URL(target);
      const server = createTcpServer((client) => {
        if (!open) {
          client.destroy();
          return;
        }
        const upstream = connect(Number(port), hostname);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('error', drop).on('close', drop);
        }
        client.pipe(upstream).pipe(client);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      t.after(() => new Promise((r) => server.close(r)));
      return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    }),
  );
  return {
    endpoints,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    restore() {
      open = true;
    },
  };
}
