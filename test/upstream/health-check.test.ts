/**
 * Active HTTP health checks against real servers: what the check sends, how the answer is judged
 * (status range, a malformed answer, a connection closed without one), and a change reported once
 * the threshold is reached.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type IncomingHttpHeaders } from 'node:http';
import { createServer as createNetServer, type Server } from 'node:net';
import { test } from 'node:test';
import { healthCheckSchema } from '../../src/config/schema/resilience.ts';
import { type HealthChange, HealthChecker } from '../../src/upstream/health-check.ts';
import { eventually } from '../support/velocity.ts';

const silentLog = { info() {}, warn() {}, error() {}, debug() {} } as unknown as ConstructorParameters<typeof HealthChecker>[1];

/** A checker of one server (slot 0) that starts healthy and reports every result and change. */
function watchOne(t: { after(fn: () => unknown): void }, url: string, health: Record<string, unknown>) {
  let up = true;
  const changes: HealthChange[] = [];
  const results: boolean[] = [];
  const checker = new HealthChecker(
    {
      isUp: () => up,
      setUp: (_slot, value, change) => {
        up = value;
        if (change) changes.push(change);
      },
      counted: (_slot, passed) => results.push(passed),
    },
    silentLog,
  );
  t.after(() => checker.close());
  const config = healthCheckSchema.parse({ type: 'http', interval: '50ms', timeout: '5s', unhealthy_threshold: 1, healthy_threshold: 1, ...health });
  checker.watch('api', { id: 'a', url, slot: 0 }, config, true);
  return { changes, results };
}

async function listen(t: { after(fn: () => unknown): void }, server: Server | ReturnType<typeof createHttpServer>): Promise<number> {
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  t.after(() => server.close());
  return (server.address() as { port: number }).port;
}

test('an HTTP check sends one GET of the path with Host, a user agent and Connection: close, and passes on a status in range', async (t) => {
  const seen: { url: string | undefined; headers: IncomingHttpHeaders }[] = [];
  const server = createHttpServer((req, res) => {
    seen.push({ url: req.url, headers: req.headers });
    res.writeHead(204).end();
  });
  const port = await listen(t, server);
  const { changes, results } = watchOne(t, `http://127.0.0.1:${port}`, { path: '/healthz?deep=1', host: 'app.internal' });
  await eventually(() => results.length >= 2, 30_000, 'two checks ran');
  assert.deepEqual(results.slice(0, 2), [true, true]);
  assert.equal(changes.length, 0);
  assert.equal(seen[0]?.url, '/healthz?deep=1');
  assert.equal(seen[0]?.headers.host, 'app.internal');
  assert.equal(seen[0]?.headers['user-agent'], 'velocity-health-check');
  assert.equal(seen[0]?.headers.connection, 'close');
});

test('a status out of range, a malformed answer and a connection closed without an answer each fail the check with their reason', async (t) => {
  const status = createHttpServer((_req, res) => res.writeHead(503).end('busy'));
  // The checker drops a connection as soon as it has its verdict, possibly before these servers have read
  // its request: their side may then see ECONNRESET, which is not what this test is about.
  const malformed = createNetServer((socket) => socket.on('error', () => undefined).end('HTTP/1.1 2x0 OK\r\n\r\n'));
  const silentClose = createNetServer((socket) => socket.on('error', () => undefined).destroy());
  const cases: [number, RegExp][] = [
    [await listen(t, status), /status 503, expected 200-399/],
    [await listen(t, malformed), /upstream response: invalid status code/],
    [await listen(t, silentClose), /connection closed before any response byte|ECONNRESET/],
  ];
  for (const [port, reason] of cases) {
    const { changes } = watchOne(t, `http://127.0.0.1:${port}`, {});
    await eventually(() => changes.length > 0, 30_000, `the server on ${port} is reported down`);
    assert.equal(changes[0]?.up, false);
    assert.match(changes[0]?.reason ?? '', reason);
  }
});
