/** A real redis-server on a free loopback port for one test, stopped by PID at the end. */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { serviceUnavailable } from './require-service.ts';
import { freePort, sleep } from './spawn.ts';

export interface RedisServer {
  port: number;
  url: string;
  readonly pid: number | undefined;
  stop(): Promise<void>;
  /** Starts it again on the same port after stop(). */
  start(): Promise<void>;
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.setTimeout(500, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('data', (d) => {
      socket.destroy();
      // A server with a password answers NOAUTH: it is up all the same.
      resolve(/^(\+PONG|-NOAUTH)/.test(d.toString()));
    });
    socket.once('error', () => resolve(false));
  });
}

export interface RedisStartOptions {
  /** A port chosen beforehand (a sentinel's config file names it); default: a free one. */
  port?: number;
  /** Arguments after the standard ones, e.g. ['--replicaof', '127.0.0.1', '6379']. */
  args?: string[];
  /** Start `redis-sentinel FILE` instead (the file sets the port). */
  sentinelConf?: string;
  /** Put into the URL (the server's own `--requirepass` goes in args). */
  password?: string;
}

export async function startRedis(t: TestContext, options: RedisStartOptions = {}): Promise<RedisServer | undefined> {
  const port = options.port ?? (await freePort());
  const what = options.sentinelConf ? 'redis-sentinel' : 'redis-server';
  const args = options.sentinelConf
    ? [options.sentinelConf]
    : ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', ...(options.args ?? [])];
  let child: ChildProcess | undefined;
  const workDir = mkdtempSync(join(tmpdir(), 'velocity-redis-'));
  t.after(() => rmSync(workDir, { recursive: true, force: true }));
  const launch = async () => {
    // Its own working folder: a replica's full sync writes dump.rdb there even with --save "".
    const proc = spawn(what, args, { stdio: 'ignore', cwd: workDir });
    const failed = new Promise<Error>((resolve) => proc.once('error', resolve));
    child = proc;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const outcome = await Promise.race([ping(port), failed.then((e) => e)]);
      if (outcome instanceof Error) throw outcome;
      if (outcome) return;
      if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}`);
      await sleep(30);
    }
    throw new Error(`${what} did not answer PING within 15 s`);
  };
  const stop = async () => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
  };
  try {
    await launch();
  } catch (err) {
    await stop();
    serviceUnavailable(t, what, (err as Error).message);
    return undefined;
  }
  t.after(stop);
  return {
    port,
    url: `redis://${options.password ? `:${encodeURIComponent(options.password)}@` : ''}127.0.0.1:${port}`,
    get pid() {
      return child?.pid;
    },
    stop,
    start: launch,
  };
}
