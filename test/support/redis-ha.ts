/**
 * Highly available Redis for tests, from Debian's redis-server and redis-sentinel on
 * loopback ports: a primary, a replica and three sentinels; or a three-master Redis
 * Cluster. Every process is started and stopped by PID (test/support/redis.ts).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { type RedisServer, startRedis } from './redis.ts';
import { freePort, mustRun, runCommand, sleep } from './spawn.ts';

const MASTER = 'mymaster';

async function tempDir(t: TestContext, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `velocity-${name}-`));
  // Removing it under a running server does no harm: the server is stopped by its own after() hook.
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** `redis-cli` against a loopback port, failing on a non-zero exit. */
export const redisCli = (port: number, args: string[], password?: string) =>
  mustRun('redis-cli', ['-p', String(port), ...(password ? ['-a', password, '--no-auth-warning'] : []), ...args], { timeoutMs: 15_000 });

/** Polls `check` every 200 ms until it holds, failing with `what` after `timeoutMs`. */
async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(200);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export interface SentinelSet {
  master: string;
  /** Sentinel ports. */
  sentinels: number[];
  primary: RedisServer;
  replica: RedisServer;
  /** The port the sentinels name as the primary now. */
  primaryPort(): Promise<number>;
  /** Waits until the sentinels name another port than `oldPort` as primary (a failover completed). */
  failedOver(oldPort: number, timeoutMs: number): Promise<number>;
}

/**
 * A primary with one replica, watched by three sentinels (quorum 2, down after 1 s).
 * Redis nodes use `password`, sentinels `sentinelPassword`. Resolves once the replica
 * is in sync and every sentinel knows it — before the one, a failover loses what was
 * written (Redis 7 waits 5 s before a diskless full sync: `repl-diskless-sync-delay`,
 * set to 0 here); before the other, it aborts (no-good-slave).
 */
export async function startSentinelSet(t: TestContext, passwords: { password: string; sentinelPassword: string }): Promise<SentinelSet | undefined> {
  const dir = await tempDir(t, 'sentinel');
  const auth = ['--requirepass', passwords.password, '--masterauth', passwords.password];
  const primary = await startRedis(t, { args: [...auth, '--repl-diskless-sync-delay', '0'], password: passwords.password });
  if (!primary) return undefined;
  const replica = await startRedis(t, { args: [...auth, '--replicaof', '127.0.0.1', String(primary.port)], password: passwords.password });
  if (!replica) return undefined;
  await until(
    async () => (await redisCli(replica.port, ['info', 'replication'], passwords.password)).includes('master_link_status:up'),
    60_000,
    'the replica to be in sync with the primary',
  );
  const sentinels: number[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const conf = join(dir, `sentinel-${port}.conf`);
    await writeFile(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `requirepass ${passwords.sentinelPassword}`,
        `sentinel monitor ${MASTER} 127.0.0.1 ${primary.port} 2`,
        `sentinel auth-pass ${MASTER} ${passwords.password}`,
        `sentinel down-after-milliseconds ${MASTER} 1000`,
        `sentinel failover-timeout ${MASTER} 5000`,
        '',
      ].join('\n'),
    );
    if (!(await startRedis(t, { port, sentinelConf: conf }))) return undefined;
    sentinels.push(port);
  }
  const ask = (port: number, args: string[]) => redisCli(port, args, passwords.sentinelPassword);
  // Sentinels learn about replicas from the primary's INFO, refreshed every 10 s.
  await until(
    async () => (await Promise.all(sentinels.map((s) => ask(s, ['sentinel', 'replicas', MASTER])))).every((out) => out.includes(String(replica.port))),
    60_000,
    'every sentinel to know the replica',
  );
  const primaryPort = async () => Number((await ask(sentinels[0] as number, ['sentinel', 'get-master-addr-by-name', MASTER])).trim().split('\n')[1]);
  return {
    master: MASTER,
    sentinels,
    primary,
    replica,
    primaryPort,
    async failedOver(oldPort, timeoutMs) {
      let now = oldPort;
      await until(
        async () => {
          now = await primaryPort();
          return now !== oldPort && (await redisCli(now, ['role'], passwords.password)).startsWith('master');
        },
        timeoutMs,
        'the sentinels to promote the replica',
      );
      return now;
    },
  };
}

export interface RedisClusterLab {
  /** The masters' ports. */
  ports: number[];
}

/** Three masters (no replicas) with every slot assigned, through `redis-cli --cluster create`. */
export async function startRedisCluster(t: TestContext): Promise<RedisClusterLab | undefined> {
  const dir = await tempDir(t, 'cluster');
  const ports: number[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    // The cluster bus defaults to port + 10000, which may be taken or past 65535: name a free one.
    const bus = await freePort();
    const args = ['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-port', String(bus), '--dir', dir];
    if (!(await startRedis(t, { port, args }))) return undefined;
    ports.push(port);
  }
  const created = await runCommand('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], {
    timeoutMs: 60_000,
  });
  if (created.code !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
  await until(
    async () => (await Promise.all(ports.map((p) => redisCli(p, ['cluster', 'info'])))).every((info) => /cluster_state:ok/.test(info)),
    60_000,
    'every cluster node to report cluster_state:ok',
  );
  return { ports };
}
