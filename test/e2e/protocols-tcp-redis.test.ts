/**
 * TCP mode carrying a real protocol: redis-cli through Velocity to two real
 * redis-server processes, balanced, with failover when one dies and recovery
 * when it returns, and garbage on one connection leaving the others alone.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import type { TestContext } from 'node:test';
import { test } from 'node:test';
import { listenerAddress } from '../proxy/clients.ts';
import { type RedisServer, startRedis } from '../support/redis.ts';
import { serviceUnavailable } from '../support/require-service.ts';
import { eventually, startInProcess } from '../support/velocity.ts';

interface CliResult {
  ok: boolean;
  out: string;
}

/** One redis-cli run (a new TCP connection each time, so each is balanced on its own). */
function redisCli(port: number, ...args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 }, (err, stdout, stderr) => {
      if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') reject(err);
      else resolve({ ok: !err && !stdout.startsWith('Could not connect') && !stderr, out: stdout.trim() });
    });
  });
}

/** Two redis-servers behind a round-robin TCP service with fast TCP health checks. */
async function lab(t: TestContext): Promise<{ redis: [RedisServer, RedisServer]; port: number; serverUp: (i: number) => boolean } | undefined> {
  const a = await startRedis(t);
  const b = a && (await startRedis(t));
  if (!a || !b) return undefined;
  try {
    await redisCli(a.port, 'PING');
  } catch (err) {
    serviceUnavailable(t, 'redis-cli', (err as Error).message);
    return undefined;
  }
  const velocity = await startInProcess(
    t,
    `
admin: { enabled: false }
shutdown_timeout: 1s
services:
  - name: redis
    mode: tcp
    listen: 127.0.0.1:0
    servers: [tcp://127.0.0.1:${a.port}, tcp://127.0.0.1:${b.port}]
    health: { type: tcp, interval: 200ms, timeout: 500ms, unhealthy_threshold: 2, healthy_threshold: 2 }
    passive_health: { base_ejection: 500ms }
    timeouts: { connect: 1s }
`,
  );
  const servers = () => velocity.dataPlane.service('redis')?.servers ?? [];
  return { redis: [a, b], port: listenerAddress(velocity, 'tcp').port, serverUp: (i) => servers()[i]?.activeUp === true };
}

/** The port of the redis-server that answered, asked through Velocity. */
async function answeringPort(port: number): Promise<number> {
  const res = await redisCli(port, 'CONFIG', 'GET', 'port');
  assert.ok(res.ok, res.out);
  return Number(res.out.split('\n')[1]);
}

test('redis-cli PING through Velocity is answered by both redis-servers in turn', async (t) => {
  const l = await lab(t);
  if (!l) return;
  for (let i = 0; i < 4; i++) assert.deepEqual(await redisCli(l.port, 'PING'), { ok: true, out: 'PONG' });
  const ports: number[] = [];
  for (let i = 0; i < 4; i++) ports.push(await answeringPort(l.port));
  assert.deepEqual(ports.sort(), [l.redis[0].port, l.redis[0].port, l.redis[1].port, l.redis[1].port].sort());
  // A real exchange, not only PING: a value written is read back from the server that holds it.
  const set = await redisCli(l.port, 'SET', 'velocity:key', 'through-the-proxy');
  assert.equal(set.out, 'OK');
});

test('when one redis-server dies every PING still gets PONG from the other, and it rejoins after a restart', async (t) => {
  const l = await lab(t);
  if (!l) return;
  const [a, b] = l.redis;
  await a.stop();
  // Before the health check notices, a refused connect is retried on the other server.
  for (let i = 0; i < 6; i++) {
    assert.deepEqual(await redisCli(l.port, 'PING'), { ok: true, out: 'PONG' });
    assert.equal(await answeringPort(l.port), b.port);
  }
  await eventually(() => !l.serverUp(0), 5_000, 'the dead redis-server is marked down by TCP health checks');
  await a.start();
  await eventually(() => l.serverUp(0), 5_000, 'the restarted redis-server is healthy again');
  // Refused connects may also have ejected it (passive health, 500 ms here): it serves again after that.
  const ports = new Set<number>();
  await eventually(
    async () => {
      ports.add(await answeringPort(l.port));
      return ports.size === 2;
    },
    5_000,
    'both serve again',
  );
  assert.deepEqual([...ports].sort(), [a.port, b.port].sort());
});

test('garbage sent on one connection only reaches its own redis connection; other clients keep working', async (t) => {
  const l = await lab(t);
  if (!l) return;
  const garbage = Array.from(
    { length: 6 },
    (_v, i) =>
      new Promise<string>((resolve) => {
        const socket = netConnect(l.port, '127.0.0.1', () => {
          // Not RESP: random bytes, an unterminated bulk string, then a TLS hello's first bytes.
          socket.write(Buffer.from(Array.from({ length: 4096 }, (_x, j) => (j * 131 + i * 7) & 0xff)));
          socket.write('*2\r\n$999999\r\nabc');
          socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]));
        });
        let got = '';
        socket.on('data', (d) => {
          got += d.toString('latin1');
        });
        socket.on('error', () => undefined);
        socket.setTimeout(1_500, () => socket.destroy());
        socket.on('close', () => resolve(got));
      }),
  );
  const pings = (async () => {
    const answers: string[] = [];
    for (let i = 0; i < 10; i++) answers.push((await redisCli(l.port, 'PING')).out);
    return answers;
  })();
  const [garbageAnswers, answers] = await Promise.all([Promise.all(garbage), pings]);
  assert.deepEqual(answers, Array(10).fill('PONG'));
  for (const g of garbageAnswers) assert.ok(!g.includes('PONG'));
  assert.ok(
    garbageAnswers.some((g) => g.includes('-ERR')),
    'redis itself answered the garbage',
  );
});
