/** A real PostgreSQL cluster in a temp dir on a free loopback port for one test. */
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { serviceUnavailable } from './require-service.ts';
import { freePort, mustRun } from './spawn.ts';

export interface PostgresServer {
  port: number;
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

function binDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) if (existsSync(join(root, v, 'bin', 'initdb'))) return join(root, v, 'bin');
  return undefined;
}

export async function startPostgres(t: TestContext): Promise<PostgresServer | undefined> {
  const bin = binDir();
  if (!bin) {
    serviceUnavailable(t, 'PostgreSQL', 'no initdb under /usr/lib/postgresql/*/bin (apt-get install postgresql)');
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'velocity-pg-'));
  const port = await freePort();
  const asPostgres = (command: string) => mustRun('su', ['postgres', '-s', '/bin/sh', '-c', command], { timeoutMs: 60_000 });
  const data = join(dir, 'data');
  const start = async () => {
    await asPostgres(`${bin}/pg_ctl -D ${data} -l ${dir}/pg.log -o "-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" -w -t 30 start`);
  };
  /** Stops the server and waits until it is down; a stop that fails throws (a test that stops the database relies on it). */
  const stop = async () => {
    if (existsSync(join(data, 'postmaster.pid'))) await asPostgres(`${bin}/pg_ctl -D ${data} -m fast -w -t 60 stop`);
  };
  const cleanUp = async () => {
    await stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    chownSync(dir, Number((await mustRun('id', ['-u', 'postgres'])).trim()), Number((await mustRun('id', ['-g', 'postgres'])).trim()));
    await asPostgres(`${bin}/initdb -D ${data} -U velocity --auth=trust -E UTF8 >/dev/null`);
    await start();
  } catch (err) {
    await cleanUp();
    serviceUnavailable(t, 'PostgreSQL', (err as Error).message);
    return undefined;
  }
  t.after(cleanUp);
  return { port, url: `postgres://velocity@127.0.0.1:${port}/postgres`, stop, start };
}
