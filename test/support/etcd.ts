/**
 * A real etcd cluster (Debian `etcd-server`) of N members on free loopback ports, data in
 * /dev/shm (so fsync is cheap on a loaded machine). Members can be stopped and started
 * again by PID; everything is stopped and removed when the test ends.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Etcd3, type IOptions } from 'etcd3';
import { serviceUnavailable } from './require-service.ts';
import { freePort, sleep } from './spawn.ts';

export interface EtcdMember {
  name: string;
  clientPort: number;
  endpoint: string;
  readonly running: boolean;
  stop(signal?: NodeJS.Signals): Promise<void>;
  start(): Promise<void>;
}

export interface EtcdCluster {
  members: EtcdMember[];
  endpoints: string[];
  /** A client for the test's own reads and writes (closed at the end). */
  client: Etcd3;
  /** The member that leads now (waits for one). */
  leader(): Promise<EtcdMember>;
  /** Waits until every running member answers and one leads. */
  healthy(timeoutMs?: number): Promise<void>;
}

const dataRoot = existsSync('/dev/shm') ? '/dev/shm' : undefined;

export interface EtcdOptions {
  /**
   * Serve clients over TLS (https:// endpoints) with this certificate; clients trust `ca`. With
   * `client`, etcd takes only clients showing a certificate signed by `ca` (the test's own client shows `client`).
   */
  tls?: { ca: string; cert: string; key: string; client?: { cert: string; key: string } };
}

export async function startEtcdCluster(t: TestContext, size = 3, options: EtcdOptions = {}): Promise<EtcdCluster | undefined> {
  const { tls } = options;
  const clientTls = tls ? ['--cert-file', tls.cert, '--key-file', tls.key, ...(tls.client ? ['--client-cert-auth', '--trusted-ca-file', tls.ca] : [])] : [];
  const clientCert = tls?.client ? { certChain: readFileSync(tls.client.cert), privateKey: readFileSync(tls.client.key) } : {};
  const credentials: Pick<IOptions, 'credentials'> = tls ? { credentials: { rootCertificate: readFileSync(tls.ca), ...clientCert } } : {};
  const dir = mkdtempSync(join(dataRoot ?? '/tmp', 'velocity-etcd-'));
  const ports = await Promise.all(Array.from({ length: size * 2 }, () => freePort()));
  const names = Array.from({ length: size }, (_, i) => `e${i + 1}`);
  const peer = (i: number) => `http://127.0.0.1:${ports[size + i]}`;
  const initialCluster = names.map((n, i) => `${n}=${peer(i)}`).join(',');
  const token = `velocity-test-${process.pid}-${Date.now()}`;
  const children = new Map<string, ChildProcess>();
  let started = false;
  const members: EtcdMember[] = names.map((name, i) => {
    const clientPort = ports[i] as number;
    const member: EtcdMember = {
      name,
      clientPort,
      endpoint: `${tls ? 'https' : 'http'}://127.0.0.1:${clientPort}`,
      get running() {
        const c = children.get(name);
        return c !== undefined && c.exitCode === null && c.signalCode === null;
      },
      async start() {
        const child = spawn(
          'etcd',
          [
            '--name',
            name,
            '--data-dir',
            join(dir, name),
            '--listen-client-urls',
            member.endpoint,
            '--advertise-client-urls',
            member.endpoint,
            '--listen-peer-urls',
            peer(i),
            '--initial-advertise-peer-urls',
            peer(i),
            '--initial-cluster',
            initialCluster,
            '--initial-cluster-state',
            started ? 'existing' : 'new',
            '--initial-cluster-token',
            token,
            '--heartbeat-interval',
            '100',
            '--election-timeout',
            '1000',
            '--log-level',
            'error',
            ...clientTls,
          ],
          { stdio: ['ignore', 'ignore', 'pipe'] },
        );
        child.stderr?.resume();
        children.set(name, child);
        await new Promise<void>((resolve, reject) => {
          child.once('spawn', resolve);
          child.once('error', reject);
        });
      },
      async stop(signal = 'SIGKILL') {
        const child = children.get(name);
        if (!child || child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill(signal);
        await exited;
      },
    };
    return member;
  });
  const client = new Etcd3({ hosts: members.map((m) => m.endpoint), dialTimeout: 2_000, ...credentials });
  t.after(async () => {
    client.close();
    await Promise.all(members.map((m) => m.stop('SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
  });
  const status = async (m: EtcdMember) => {
    const one = new Etcd3({ hosts: m.endpoint, dialTimeout: 1_000, defaultCallOptions: () => ({ deadline: Date.now() + 1_000 }), ...credentials });
    try {
      return await one.maintenance.status();
    } catch {
      return undefined;
    } finally {
      one.close();
    }
  };
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.endpoint),
    client,
    async leader() {
      for (let i = 0; i < 300; i++) {
        for (const m of members.filter((x) => x.running)) {
          const s = await status(m);
          if (s && s.leader !== '0' && s.leader === s.header.member_id) return m;
        }
        await sleep(100);
      }
      throw new Error('no etcd leader within 30 s');
    },
    async healthy(timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const running = members.filter((m) => m.running);
        const all = await Promise.all(running.map(status));
        if (all.every((s) => s !== undefined && s.leader !== '0')) return;
        if (Date.now() > until) throw new Error(`etcd cluster not healthy within ${timeoutMs} ms`);
        await sleep(100);
      }
    },
  };
  try {
    await Promise.all(members.map((m) => m.start()));
    started = true;
    await cluster.healthy();
  } catch (err) {
    serviceUnavailable(t, 'etcd (Debian etcd-server)', (err as Error).message);
    return undefined;
  }
  return cluster;
}
