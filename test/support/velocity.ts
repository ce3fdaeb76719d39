/**
 * Starting Velocity and demo backends for tests: real processes (the binary) or
 * in-process (the library), always on 127.0.0.1 with port 0, stopped by PID at
 * the end of the test.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { parseConfig } from '../../src/config/load.ts';
import { type Logger, silentLogger } from '../../src/observe/logger.ts';
import { start, type Velocity } from '../../src/runtime/instance.ts';
import { assertNoInternalErrors, internalErrorLines, watchLogger } from './internal-errors.ts';

export const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
/** The compiled binary, as installed users run it (built by `npm test` before the tests). */
export const BIN = fileURLToPath(new URL('../../bin/velocity.js', import.meta.url));
/** `velocity backend` by its own entry point: it starts without loading the rest of the CLI (a test starts hundreds). */
export const BACKEND = fileURLToPath(new URL('../../src/backend/command.ts', import.meta.url));

export type Cleanup = Pick<TestContext, 'after'>;

/**
 * The least time any condition is given. CI shares its machine with other work: at load average 40 a
 * health flip or a log flush that takes 100 ms alone took 5–10 s, and a tight bound failed runs that
 * were correct. A bound only ends a wait for a condition that is false; it never asserts a timing.
 */
const LEAST_WAIT_MS = 30_000;
/** How long a started process gets to say it listens: generous, since a loaded CI machine took over 30 s. */
const START_WAIT_MS = 90_000;

export interface OutputWatcher {
  readonly output: () => string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

export function watchOutput(child: ChildProcess): OutputWatcher {
  let text = '';
  // Set once the process has exited and its output is read to the end: a pattern not seen by then never
  // comes, so a wait fails at once (with the output) instead of at its bound.
  let ended: string | undefined;
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of waiters) w();
  };
  const onData = (chunk: Buffer) => {
    text += chunk.toString();
    wake();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  child.once('close', (code, signal) => {
    ended = `exited (${signal ?? code})`;
    wake();
  });
  return {
    output: () => text,
    waitFor(pattern, requestedMs = LEAST_WAIT_MS) {
      const timeoutMs = Math.max(requestedMs, LEAST_WAIT_MS);
      return new Promise((resolve, reject) => {
        const settle = (result: RegExpMatchArray | Error) => {
          waiters.delete(check);
          clearTimeout(timer);
          if (result instanceof Error) reject(result);
          else resolve(result);
        };
        const check = () => {
          const m = text.match(pattern);
          if (m) settle(m);
          else if (ended) settle(new Error(`the process ${ended} before printing ${pattern}; its output:\n${text}`));
        };
        const timer = setTimeout(() => settle(new Error(`timed out after ${timeoutMs}ms waiting for ${pattern}; output so far:\n${text}`)), timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}

/** Stops a child we started, by its PID: SIGTERM, then SIGKILL after 3 s. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill(signal);
  // A bound, not a timing: a graceful stop on a loaded machine can take seconds, and a SIGKILL
  // sent too early turns a clean exit (0) into null and fails the test that checks it.
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

export interface BackendProcess {
  name: string;
  port: number;
  url: string;
  child: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port (after a kill). */
  restart(): Promise<void>;
}

/** A real `velocity backend` process on a free port. */
export async function startBackendProcess(t: Cleanup, name: string, extraArgs: string[] = [], port = 0): Promise<BackendProcess> {
  const launch = async (p: number) => {
    const child = spawn(process.execPath, [BACKEND, '--port', String(p), '--name', name, ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    // A backend that never came up is stopped, not left holding the test process open.
    const m = await watchOutput(child)
      .waitFor(/listening on 127\.0\.0\.1:(\d+)/, START_WAIT_MS)
      .catch(async (err: unknown) => {
        await stopChild(child, 'SIGKILL');
        throw err;
      });
    return { child, port: Number(m[1]) };
  };
  let { child, port: bound } = await launch(port);
  const backend: BackendProcess = {
    name,
    port: bound,
    url: `http://127.0.0.1:${bound}`,
    child,
    async stop(signal = 'SIGTERM') {
      await stopChild(backend.child, signal);
    },
    async restart() {
      await stopChild(backend.child, 'SIGKILL');
      ({ child, port: bound } = await launch(backend.port));
      backend.child = child;
    },
  };
  t.after(() => stopChild(backend.child, 'SIGKILL'));
  return backend;
}

export async function startBackends(t: Cleanup, count: number, extraArgs: string[] = []): Promise<BackendProcess[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => startBackendProcess(t, `b${i + 1}`, extraArgs)));
}

/**
 * Velocity in this process, from YAML text (listen on 127.0.0.1:0 unless the YAML says otherwise).
 * The test fails at its end when Velocity logged an internal error.
 */
export async function startInProcess(t: Cleanup, yaml: string, options: { logger?: Logger } = {}): Promise<Velocity> {
  const { config } = parseConfig(yaml, 'test.yaml');
  const internal: string[] = [];
  const velocity = await start(config, { logger: watchLogger(options.logger ?? silentLogger(), internal) });
  t.after(async () => {
    await velocity.close();
    assertNoInternalErrors(internal, 'Velocity (in process)');
  });
  return velocity;
}

/** Velocity in process with one service named `app` and the admin API off; `service` holds that service's keys (servers, policy, …) at the left margin. */
export function startApp(t: Cleanup, service: string): Promise<Velocity> {
  const keys = service
    .trimEnd()
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
  return startInProcess(t, `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n${keys}\n`);
}

export interface VelocityProcess {
  child: ChildProcess;
  port: number;
  url: string;
  configFile: string;
  logs: OutputWatcher;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** The real binary (`bin/velocity.js start`) with a config file written from YAML text; `cwd`: its working directory (this process's by default). */
export async function startVelocityProcess(t: Cleanup, yaml: string, options: { bin?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<VelocityProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'velocity-test-'));
  const configFile = join(dir, 'velocity.yaml');
  writeFileSync(configFile, yaml);
  const child = spawn(process.execPath, [options.bin ?? BIN, 'start', '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
    cwd: options.cwd,
  });
  const logs = watchOutput(child);
  t.after(async () => {
    await stopChild(child, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    assertNoInternalErrors(internalErrorLines(logs.output()), 'the Velocity process');
  });
  const m = await logs.waitFor(/"listen":\["[^"]*:(\d+)"/, START_WAIT_MS);
  const port = Number(m[1]);
  return { child, port, url: `http://127.0.0.1:${port}`, configFile, logs, stop: (signal) => stopChild(child, signal) };
}

/** A fresh connection pool per test so keep-alive state never leaks between tests. */
export function testAgent(t: Cleanup): Agent {
  const agent = new Agent({ keepAliveTimeout: 1_000, connections: 64 });
  t.after(() => agent.close());
  return agent;
}

export interface SimpleResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export async function get(agent: Agent, url: string, init: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<SimpleResponse> {
  const res = await request(url, { dispatcher: agent, method: (init.method ?? 'GET') as 'GET', headers: init.headers, body: init.body });
  const body = await res.body.text();
  return { status: res.statusCode, headers: res.headers as SimpleResponse['headers'], body };
}

/** Runs `total` requests with at most `concurrency` in flight; returns each result in completion order. */
export async function load<T>(total: number, concurrency: number, send: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      results.push(await send(i));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
  return results;
}

export const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Waits until `value` has not changed for `steadyMs` (a transfer that stalled: kernel buffers full, nothing
 * more taken), within `timeoutMs`; returns the value it settled at.
 */
export async function untilSteady(value: () => number, what: string, steadyMs = 1000, timeoutMs = 60_000): Promise<number> {
  let last = Number.NaN;
  let since = Date.now();
  await eventually(
    () => {
      const now = value();
      if (now !== last) {
        last = now;
        since = Date.now();
        return false;
      }
      return Date.now() - since >= steadyMs;
    },
    timeoutMs,
    what,
    100,
  );
  return last;
}

/** Polls `check` until it returns true or the bound (`timeoutMs`, at least 30 s) passes; returns the elapsed ms. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string, stepMs = 25): Promise<number> {
  const started = Date.now();
  const bound = Math.max(timeoutMs, LEAST_WAIT_MS);
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > bound) throw new Error(`not within ${bound}ms: ${what}`);
    await delay(stepMs);
  }
}
