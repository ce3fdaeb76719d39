/** Retries, timeouts and broken backends, end to end. */
import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { delay, get, startApp, startBackends, startInProcess, testAgent } from '../support/velocity.ts';

async function count(agent: ReturnType<typeof testAgent>, url: string): Promise<number> {
  return JSON.parse((await get(agent, `${url}/_count`)).body).count;
}

/** A TCP server that answers every request with `reply` (raw bytes), to play a broken backend. */
async function rawBackend(t: { after(fn: () => unknown): void }, reply: (socket: Socket) => void): Promise<{ url: string; connections: () => number }> {
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    socket.once('data', () => reply(socket));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, connections: () => connections };
}

describe('retries', () => {
  test('a POST that reached a server is never sent twice, even when it fails', async (t) => {
    const backends = await startBackends(t, 2);
    const velocity = await startApp(
      t,
      `servers: [${backends.map((b) => b.url).join(', ')}]
retries: { attempts: 3, retry_on: [502, 503] }
passive_health: { enabled: false }
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}`;
    const agent = testAgent(t);
    const r = await get(agent, `${url}/status/503`, { method: 'POST', body: 'order=1' });
    assert.equal(r.status, 503, 'the server’s own answer is passed on');
    const seen = (await count(agent, backends[0]?.url as string)) + (await count(agent, backends[1]?.url as string));
    assert.equal(seen, 1 + 2, 'one POST in all (plus our two /_count requests)');
  });

  test('a retried GET lands on a different server; a POST whose connect failed is retried too', async (t) => {
    const [alive, dead] = await startBackends(t, 2);
    await dead?.stop('SIGKILL');
    const velocity = await startApp(
      t,
      `policy: round-robin
servers: [${dead?.url}, ${alive?.url}]
retries: { attempts: 2, budget: 1 }
passive_health: { enabled: false }
circuit_breaker: { enabled: false }
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}`;
    const agent = testAgent(t);
    const retried: number[] = [];
    velocity.observe((r) => retried.push(r.retries));
    for (let i = 0; i < 6; i++) {
      const method = i % 2 === 0 ? 'GET' : 'POST';
      const r = await get(agent, `${url}/`, { method, body: method === 'POST' ? 'x' : undefined });
      assert.equal(r.status, 200, `${method} #${i}`);
      assert.equal(r.headers['x-backend'], 'b1');
    }
    await delay(50);
    assert.ok(retried.filter((n) => n === 1).length >= 3, `retries per request: ${retried.join(',')}`);
    assert.equal(await count(agent, alive?.url as string), 6 + 1);
  });

  test('retries stop at the retry budget so an outage cannot multiply load', async (t) => {
    const backends = await startBackends(t, 2);
    const velocity = await startApp(
      t,
      `servers: [${backends.map((b) => b.url).join(', ')}]
retries: { attempts: 2, retry_on: [503], budget: 0.1, min_retries_per_second: 0 }
passive_health: { enabled: false }
circuit_breaker: { enabled: false }
`,
    );
    const url = `http://127.0.0.1:${velocity.address.port}`;
    const agent = testAgent(t);
    for (let i = 0; i < 40; i++) await get(agent, `${url}/status/503`);
    const seen = (await count(agent, backends[0]?.url as string)) + (await count(agent, backends[1]?.url as string)) - 2;
    // 40 requests; retries limited to 10% of the requests of the budget window (10 s; twice that if the run straddles two windows).
    assert.ok(seen >= 40 && seen <= 40 + 8, `${seen} tries for 40 requests`);
  });
});

describe('timeouts and broken backends', () => {
  test('a backend answering garbage gives 502 and its connection is not reused', async (t) => {
    const garbage = await rawBackend(t, (s) => s.end('NOT HTTP AT ALL\r\n\r\n'));
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: [${garbage.url}]\n    retries: { attempts: 1 }\n`,
    );
    const agent = testAgent(t);
    for (let i = 0; i < 3; i++) {
      const r = await get(agent, `http://127.0.0.1:${velocity.address.port}/`);
      assert.equal(r.status, 502);
      assert.equal(r.headers['x-velocity-error'], 'UPSTREAM_BAD_RESPONSE');
    }
    assert.equal(garbage.connections(), 3, 'a new connection for each request');
  });

  test('a backend sending a huge header gives 502', async (t) => {
    const huge = await rawBackend(t, (s) => s.end(`HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(100_000)}\r\ncontent-length: 2\r\n\r\nok`));
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: [${huge.url}]\n    retries: { attempts: 1 }\n`,
    );
    const r = await get(testAgent(t), `http://127.0.0.1:${velocity.address.port}/`);
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-velocity-error'], 'UPSTREAM_BAD_RESPONSE');
  });

  test('a backend closing mid-body cuts the client response instead of passing a short body as complete', async (t) => {
    const cut = await rawBackend(t, (s) => s.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly-part'));
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: [${cut.url}]\n    retries: { attempts: 1 }\n`,
    );
    await assert.rejects(get(testAgent(t), `http://127.0.0.1:${velocity.address.port}/`));
  });

  test('a client too slow to send its headers gets 408', async (t) => {
    const [backend] = await startBackends(t, 1);
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nclient: { header_timeout: 300ms }\nservices:\n  - name: app\n    servers: [${backend?.url}]\n`,
    );
    const reply = await new Promise<string>((resolve) => {
      const socket = connect(velocity.address.port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n'));
      let data = '';
      socket.on('data', (d) => {
        data += d;
      });
      socket.on('close', () => resolve(data));
      socket.on('error', () => resolve(data));
    });
    assert.match(reply, /^HTTP\/1\.1 408 /);
  });
});

describe('resilience config validation', () => {
  const problem = (yaml: string) => {
    try {
      parseConfig(`services:\n  - name: app\n    servers: [http://127.0.0.1:1]\n${yaml}`, 'v.yaml');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems[0];
    }
    assert.fail('accepted');
  };

  test('a negative duration, a threshold of 0 and a ratio above 1 are errors with line and column', () => {
    const negative = problem('    timeouts: { connect: -5s }\n');
    assert.equal(negative?.path, 'services[0].timeouts.connect');
    assert.equal(negative?.line, 4);
    assert.match(negative?.message ?? '', /not a duration/);
    const zero = problem('    passive_health:\n      consecutive_failures: 0\n');
    assert.equal(zero?.path, 'services[0].passive_health.consecutive_failures');
    assert.equal(zero?.line, 5);
    assert.match(zero?.message ?? '', /greater than 0/);
    const ratio = problem('    circuit_breaker: { failure_ratio: 1.5 }\n');
    assert.equal(ratio?.path, 'services[0].circuit_breaker.failure_ratio');
    assert.match(ratio?.message ?? '', /between 0 and 1/);
  });
});
