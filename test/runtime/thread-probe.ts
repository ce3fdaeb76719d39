/**
 * For tests of the threaded mode: client connections sorted by the data-path
 * thread that serves them. The kernel spreads connections over the threads'
 * listeners (SO_REUSEPORT) by a hash, so a test cannot choose; it finds out by
 * sending one slow request per connection and seeing which thread's in-flight
 * cell (shared memory, per thread and server) goes up.
 */
import { Client } from 'undici';
import type { Velocity } from '../../src/runtime/instance.ts';
import { delay } from '../support/velocity.ts';

/** Requests in flight on each thread (index 0 = main), summed over the servers of `service`. */
export function inFlightByThread(velocity: Velocity, service: string): number[] {
  const state = velocity.controlPlane.state;
  const slots = velocity.controlPlane.servers(service).map((s) => s.spec.slot);
  const threads = (velocity.threads?.count ?? 0) + 1;
  return Array.from({ length: threads }, (_, thread) => slots.reduce((sum, slot) => sum + state.threadInFlightOf(thread, slot), 0));
}

/** Requests in flight on each thread for one server of `service`. */
export function serverInFlightByThread(velocity: Velocity, service: string, serverId: string): number[] {
  const state = velocity.controlPlane.state;
  const slot = velocity.controlPlane.servers(service).find((s) => s.spec.id === serverId)?.spec.slot;
  if (slot === undefined) throw new Error(`no server ${serverId}`);
  const threads = (velocity.threads?.count ?? 0) + 1;
  return Array.from({ length: threads }, (_, thread) => state.threadInFlightOf(thread, slot));
}

export interface ThreadConnections {
  /** Open keep-alive connections by the thread (1…N) that serves them. */
  byThread: Map<number, Client[]>;
  all: Client[];
  close(): Promise<void>;
}

/**
 * Opens connections until every thread has at least `perThread` of them (at most
 * `max` connections). `probePath` must reach a backend that honours `?delay=`.
 */
export async function connectionsByThread(velocity: Velocity, service: string, perThread: number, max = 48): Promise<ThreadConnections> {
  const origin = `http://127.0.0.1:${velocity.address.port}`;
  const count = velocity.threads?.count ?? 1;
  const byThread = new Map<number, Client[]>(Array.from({ length: count }, (_, i) => [i + 1, []]));
  const all: Client[] = [];
  const enough = () => [...byThread.values()].every((list) => list.length >= perThread);
  while (!enough() && all.length < max) {
    const client = new Client(origin, { keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000, pipelining: 1 });
    all.push(client);
    const before = inFlightByThread(velocity, service);
    const probe = client.request({ method: 'GET', path: '/probe?delay=150' }).then((r) => r.body.text());
    let thread = -1;
    for (let i = 0; i < 40 && thread < 0; i++) {
      await delay(10);
      const now = inFlightByThread(velocity, service);
      thread = now.findIndex((n, t) => n > (before[t] ?? 0));
    }
    await probe;
    if (thread > 0) byThread.get(thread)?.push(client);
  }
  if (!enough()) throw new Error(`after ${all.length} connections some thread still has fewer than ${perThread}: ${[...byThread].map(([t, l]) => `${t}:${l.length}`).join(' ')}`);
  return { byThread, all, close: () => Promise.all(all.map((c) => c.close().catch(() => undefined))).then(() => undefined) };
}

/** One request on one connection: status, the answering backend, body. */
export async function send(client: Client, path: string): Promise<{ status: number; backend: string | undefined; body: string }> {
  const res = await client.request({ method: 'GET', path });
  const body = await res.body.text();
  const backend = res.headers['x-backend'];
  return { status: res.statusCode, backend: typeof backend === 'string' ? backend : undefined, body };
}
