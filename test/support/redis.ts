/** A real redis-server on a free loopback port for one test, stopped by PID at the end. */
import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
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
      resolve(d.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startRedis(t: TestContext): Promise<RedisServer | undefined> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const launch = async () => {
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], { stdio: 'ignore' });
    const failed = new Promise<Error>((resolve) => proc.once('error', resolve));
    child = proc;
    for (let i = 0; i < 100; i++) {
      const outcome = await Promise.race([ping(port), failed.then((e) => e)]);
      if (outcome instanceof Error) throw outcome;
      if (outcome) return;
      if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}`);
      await sleep(30);
    }
    throw new Error('redis-server did not answer PING within 3 s');
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
    serviceUnavailable(t, 'redis-server', (err as Error).message);
    return undefined;
  }
  t.after(stop);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return child?.pid;
    },
    stop,
    start: launch,
  };
}
