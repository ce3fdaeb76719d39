/**
 * `velocity backend`: the demo/test backend as a command. Its own entry point too
 * (`node src/backend/command.ts --port 0`), so a test that starts many backends does not
 * load the whole load balancer into each of them: the CLI's imports cost a backend
 * start over a second of CPU, this file's a fraction of it.
 */
import { parseArgs } from 'node:util';
import { startBackend } from './demo-backend.ts';

/** Starts the backend and keeps it running until SIGTERM/SIGINT: resolves -1 (no exit code yet) or 2 for bad flags. */
export async function backendCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { port: { type: 'string', short: 'p' }, name: { type: 'string' }, delay: { type: 'string' }, host: { type: 'string' } } });
  const port = Number(values.port ?? process.env.PORT ?? 0);
  const delayMs = values.delay !== undefined ? Number(values.delay) : process.env.DURATION ? Number(process.env.DURATION) * 1000 : 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535 || !Number.isFinite(delayMs) || delayMs < 0) {
    console.error('velocity backend: --port must be 0-65535 and --delay a number of milliseconds ≥ 0');
    return 2;
  }
  // HOST too, like PORT: the container image sets HOST=0.0.0.0.
  const host = values.host ?? process.env.HOST ?? '127.0.0.1';
  const backend = await startBackend({ port, host, name: values.name ?? `backend-${port}`, delayMs });
  console.log(`backend ${values.name ?? `backend-${backend.port}`} listening on ${host}:${backend.port}`);
  const stop = () => void backend.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return -1;
}

if (import.meta.main) {
  backendCommand(process.argv.slice(2)).then((code) => {
    if (code >= 0) process.exitCode = code;
  });
}
