/**
 * Idle pooled connections and the event loop: a connection busy with an exchange keeps the process
 * alive, an idle one kept for reuse does not (it lets go a sweep tick after going idle, not per response).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { runCommand } from '../support/spawn.ts';

/** Sends one GET through a pool of its own, prints what the pool kept, and does nothing more. */
const CHILD = `
const { PoolSet } = await import(${JSON.stringify(resolve(import.meta.dirname, '../../src/upstream/http1-pool.ts'))});
const port = Number(process.argv[1]);
const pool = new PoolSet().get('http://127.0.0.1:' + port, { host: '127.0.0.1', port }, { connectTimeout: 30000, keepAliveTimeout: 600000, tls: undefined });
pool.request({ method: 'GET', path: '/', headers: ['host', 'backend'], body: null, responseHeaderTimeout: 30000, idleTimeout: 30000 }, {
  onInformational() {},
  onHead: (head) => { console.log('status ' + head.status); return false; },
  onData: () => true,
  chunkReleased: () => true,
  onEnd: () => console.log('idle ' + pool.idleCount),
  onError: (err) => { console.log('error ' + err.message); process.exitCode = 1; },
});
`;

test('a process whose only handle is an idle pooled connection exits; the exchange before it kept the process alive', async (t) => {
  // The backend answers after a delay: nothing but the busy connection keeps the child alive meanwhile.
  const server = createServer((_req, res) => setTimeout(() => res.end('ok'), 300));
  server.keepAliveTimeout = 600_000;
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  t.after(() => server.close());
  t.after(() => server.closeAllConnections());
  const { port } = server.address() as { port: number };

  const child = await runCommand(process.execPath, ['--input-type=module', '-e', CHILD, String(port)], { timeoutMs: 60_000 });
  assert.equal(child.stderr, '');
  // Killed by the timeout (the idle socket held the loop), the child would have no exit code.
  assert.equal(child.code, 0);
  assert.deepEqual(child.stdout.trim().split('\n'), ['status 200', 'idle 1']);
});
