/**
 * One attempt loop for every protocol (proxy/attempt-loop.ts). A conformance suite runs the same
 * scenarios over each protocol's tries — HTTP/1.1 and HTTP/2 servers, WebSocket upgrades, TCP
 * connections — and the rules HTTP/1.1 requests always had (the per-try and total timeouts, a refused
 * retry saying why) are checked where the other protocols had loops of their own without them.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { createServer as createH2Server, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { RequestRecord } from '../../src/observe/events.ts';
import type { Velocity } from '../../src/runtime/instance.ts';
import { listenerAddress } from '../proxy/clients.ts';
import { startSilentServer } from '../support/silent-server.ts';
import { type Cleanup, eventually, get, type SimpleResponse, startApp, startInProcess, testAgent } from '../support/velocity.ts';

/** A server's timeouts far longer than any wait below: an answer that comes at all came from the loop's own timeout. */
const SERVER_WAIT = '120s';
/** How long the client waits: long on a loaded machine, far short of SERVER_WAIT. */
const CLIENT_WAIT_MS = 30_000;

/** An h2c server that answers every stream with its name, or (`stall`) never answers. */
async function startH2Server(t: Cleanup, name: string, stall = false): Promise<string> {
  return (await startH2ServerWith(t, name, stall)).url;
}

async function startH2ServerWith(t: Cleanup, name: string, stall = false): Promise<{ url: string; server: Http2Server }> {
  const streams = new Set<ServerHttp2Stream>();
  const server: Http2Server = createH2Server();
  server.on('stream', (stream) => {
    streams.add(stream);
    stream.on('error', () => undefined);
    if (stall) return;
    stream.respond({ ':status': 200, 'x-server': name });
    stream.end(name);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const s of streams) s.close();
    server.close();
  });
  return { url: `h2c://127.0.0.1:${(server.address() as { port: number }).port}`, server };
}

/** `pending`, or a failure once the client's wait is over. */
function answeredInTime(pending: Promise<SimpleResponse>): Promise<SimpleResponse> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${CLIENT_WAIT_MS} ms`)), CLIENT_WAIT_MS);
  });
  return Promise.race([pending, late]).finally(() => clearTimeout(timer));
}

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
/** Whether the caller's stack passes through Velocity's source. */
const byVelocity = (): boolean => new Error().stack?.includes(SRC) === true;

/** A port nothing listens on (a server that was and is gone). */
async function closedPort(): Promise<number> {
  const s = createNetServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  s.close();
  await once(s, 'close');
  return port;
}

describe('the attempt loop, for HTTP/2 servers and WebSocket upgrades', () => {
  test('HTTP/2 servers: a try past retries.per_try_timeout is cut and the request goes to another server', async (t) => {
    const [stalled, good] = await Promise.all([startH2Server(t, 'stalled', true), startH2Server(t, 'good')]);
    const velocity = await startApp(
      t,
      `policy: round-robin
servers: [ "${stalled}", "${good}" ]
retries: { attempts: 2, per_try_timeout: 300ms }
timeouts: { response_header: ${SERVER_WAIT}, idle: ${SERVER_WAIT} }
passive_health: { enabled: false }
circuit_breaker: { enabled: false }
`,
    );
    const records: RequestRecord[] = [];
    velocity.observe((r) => records.push(r));
    const agent = testAgent(t);
    for (let i = 0; i < 4; i++) {
      const r = await answeredInTime(get(agent, `http://127.0.0.1:${velocity.address.port}/${i}`));
      assert.equal(r.status, 200, `request ${i}`);
      assert.equal(r.headers['x-server'], 'good');
    }
    await eventually(() => records.length === 4, 30_000, 'four records');
    // Round-robin sends first tries to the stalled server (at least every other one): those were cut by the per-try timeout.
    const retries = records.map((r) => r.retries);
    assert.ok(retries.filter((n) => n === 1).length >= 2 && retries.every((n) => n <= 1), `retries per request: ${retries.join(',')}`);
  });

  test('HTTP/2 servers: a failed try that is not retried says why in the access record', async (t) => {
    const port = await closedPort();
    const velocity = await startApp(
      t,
      `servers: [ "h2c://127.0.0.1:${port}" ]
retries: { attempts: 3 }
passive_health: { enabled: false }
circuit_breaker: { enabled: false }
`,
    );
    const records: RequestRecord[] = [];
    velocity.observe((r) => records.push(r));
    const r = await answeredInTime(get(testAgent(t), `http://127.0.0.1:${velocity.address.port}/`));
    assert.equal(r.status, 502);
    await eventually(() => records.length === 1, 30_000, 'the record');
    assert.equal(records[0]?.errorCode, 'UPSTREAM_CONNECT_FAILED');
    assert.equal(records[0]?.retryDenied, 'no_server', 'its only server was tried');
  });

  test('HTTP/2 servers: requests one at a time make no timer each, and a connection idle past http2_sessions.idle_timeout is closed', async (t) => {
    const { url, server } = await startH2ServerWith(t, 'h2');
    let open = 0;
    server.on('session', (session) => {
      open++;
      session.once('close', () => open--);
    });
    const velocity = await startApp(
      t,
      `servers: [ "${url}" ]
http2_sessions: { idle_timeout: 300ms }
`,
    );
    const agent = testAgent(t);
    const target = `http://127.0.0.1:${velocity.address.port}/`;
    assert.equal((await get(agent, target)).status, 200);
    // Timers Velocity's code made (not the test's HTTP client) while requests go one at a time: each one leaves
    // the server connection idle for a moment.
    let made = 0;
    const { setTimeout: realTimeout, setInterval: realInterval } = globalThis;
    globalThis.setTimeout = ((...args: Parameters<typeof realTimeout>) => {
      if (byVelocity()) made++;
      return realTimeout(...args);
    }) as typeof realTimeout;
    globalThis.setInterval = ((...args: Parameters<typeof realInterval>) => {
      if (byVelocity()) made++;
      return realInterval(...args);
    }) as typeof realInterval;
    try {
      for (let i = 0; i < 50; i++) assert.equal((await get(agent, target)).status, 200);
    } finally {
      globalThis.setTimeout = realTimeout;
      globalThis.setInterval = realInterval;
    }
    assert.ok(made < 10, `${made} timers made for 50 requests`);
    assert.equal(open, 1, 'one connection carried them all');
    await eventually(() => open === 0, 30_000, 'the idle connection closed');
  });

  test('WebSocket upgrades: timeouts.total bounds the wait for the server to answer the upgrade', async (t) => {
    const silent = await startSilentServer(t);
    const velocity = await startApp(
      t,
      `servers: [ "http://127.0.0.1:${silent}" ]
timeouts: { total: 300ms, response_header: ${SERVER_WAIT} }
passive_health: { enabled: false }
circuit_breaker: { enabled: false }
`,
    );
    const client: Socket = connect(velocity.address.port, '127.0.0.1');
    t.after(() => client.destroy());
    client.write(
      'GET /chat HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    let answer = '';
    client.setEncoding('latin1');
    client.on('data', (chunk: string) => {
      answer += chunk;
    });
    await eventually(() => answer.includes('\r\n\r\n'), CLIENT_WAIT_MS, "Velocity's answer to the upgrade");
    assert.match(answer, /^HTTP\/1\.1 504 /);
  });
});

/** How one protocol makes its tries, for the conformance suite. */
interface Protocol {
  name: string;
  /** A server of this protocol that answers; its URL. */
  live(t: Cleanup): Promise<string>;
  /** The URL of a server of this protocol on `port`. */
  url(port: number): string;
  /** Velocity with one service over `servers` (URLs) and the service keys `keys` (one per line). */
  start(t: Cleanup, servers: string[], keys: string): Promise<Velocity>;
  /** One request (connection, upgrade) through Velocity: whether it was answered by a server. */
  use(t: Cleanup, velocity: Velocity): Promise<boolean>;
  /** Whether its requests leave access-log records. */
  records: boolean;
  /** The port its clients connect to, and the first bytes they send. */
  port(velocity: Velocity): number;
  opening: string;
}

const HTTP_GET = 'GET / HTTP/1.1\r\nHost: app\r\n\r\n';
const WS_UPGRADE =
  'GET /chat HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';
const httpPort = (velocity: Velocity) => velocity.address.port;

const serviceYaml = (servers: string[], keys: string, extra = '') =>
  `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nshutdown_timeout: 1s\nservices:\n  - name: app\n${extra}    servers: [ ${servers.map((u) => `"${u}"`).join(', ')} ]\n${keys
    .split('\n')
    .filter(Boolean)
    .map((l) => `    ${l}`)
    .join('\n')}\n`;

/** A plain-HTTP request through Velocity: answered by a server when 200. */
async function httpUse(t: Cleanup, velocity: Velocity): Promise<boolean> {
  return (await answeredInTime(get(testAgent(t), `http://127.0.0.1:${velocity.address.port}/`))).status === 200;
}

/** A server on raw sockets, closed with its connections after the test; its port. */
async function rawServer(t: Cleanup, onSocket: (socket: Socket) => void): Promise<number> {
  const server = createNetServer((socket) => {
    socket.on('error', () => undefined);
    t.after(() => socket.destroy());
    onSocket(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  return (server.address() as { port: number }).port;
}

const PROTOCOLS: Protocol[] = [
  {
    name: 'HTTP/1.1 servers',
    async live(t) {
      const server = http.createServer((_req, res) => res.end('ok'));
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      t.after(() => server.close());
      return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    },
    url: (port) => `http://127.0.0.1:${port}`,
    start: (t, servers, keys) => startInProcess(t, serviceYaml(servers, keys)),
    use: httpUse,
    records: true,
    port: httpPort,
    opening: HTTP_GET,
  },
  {
    name: 'HTTP/2 servers',
    live: (t) => startH2Server(t, 'h2'),
    url: (port) => `h2c://127.0.0.1:${port}`,
    start: (t, servers, keys) => startInProcess(t, serviceYaml(servers, keys)),
    use: httpUse,
    records: true,
    port: httpPort,
    opening: HTTP_GET,
  },
  {
    name: 'WebSocket upgrades',
    async live(t) {
      const port = await rawServer(t, (socket) => {
        socket.once('data', () => socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'));
      });
      return `http://127.0.0.1:${port}`;
    },
    url: (port) => `http://127.0.0.1:${port}`,
    start: (t, servers, keys) => startInProcess(t, serviceYaml(servers, keys)),
    async use(t, velocity) {
      const client = connect(velocity.address.port, '127.0.0.1');
      t.after(() => client.destroy());
      client.on('error', () => undefined);
      let answer = '';
      client.setEncoding('latin1');
      client.on('data', (chunk: string) => {
        answer += chunk;
      });
      client.write(WS_UPGRADE);
      await eventually(() => answer.includes('\r\n\r\n'), CLIENT_WAIT_MS, 'the answer to the upgrade');
      client.destroy();
      return answer.startsWith('HTTP/1.1 101 ');
    },
    records: true,
    port: httpPort,
    opening: WS_UPGRADE,
  },
  {
    name: 'TCP connections',
    async live(t) {
      const port = await rawServer(t, (socket) => {
        socket.on('data', (chunk) => socket.write(chunk));
      });
      return `tcp://127.0.0.1:${port}`;
    },
    url: (port) => `tcp://127.0.0.1:${port}`,
    start: (t, servers, keys) => startInProcess(t, serviceYaml(servers, keys, '    mode: tcp\n    listen: 127.0.0.1:0\n')),
    async use(t, velocity) {
      const client = connect(listenerAddress(velocity, 'tcp').port, '127.0.0.1');
      t.after(() => client.destroy());
      client.on('error', () => undefined);
      let echoed = '';
      let closed = false;
      client.on('data', (chunk) => {
        echoed += chunk.toString('latin1');
      });
      client.once('close', () => {
        closed = true;
      });
      client.write('ping');
      await eventually(() => echoed === 'ping' || closed, CLIENT_WAIT_MS, 'the echo or the close');
      client.destroy();
      return echoed === 'ping';
    },
    records: false,
    port: (velocity) => listenerAddress(velocity, 'tcp').port,
    opening: 'ping',
  },
];

const QUIET_KEYS = 'passive_health: { enabled: false }\ncircuit_breaker: { enabled: false }\npolicy: round-robin\n';

describe('one attempt loop: the same rules for every protocol', () => {
  for (const protocol of PROTOCOLS) {
    describe(protocol.name, () => {
      test('a server that refuses connections is tried no more than once per request: every request reaches the live one', async (t) => {
        const [live, dead] = [await protocol.live(t), protocol.url(await closedPort())];
        const velocity = await protocol.start(t, [dead, live], `${QUIET_KEYS}retries: { attempts: 2 }`);
        const records: RequestRecord[] = [];
        velocity.observe((r) => records.push(r));
        for (let i = 0; i < 4; i++) assert.ok(await protocol.use(t, velocity), `request ${i} answered`);
        if (!protocol.records) return;
        await eventually(() => records.length === 4, 30_000, 'four records');
        assert.equal(new Set(records.map((r) => r.server)).size, 1, `every answer from the live server: ${records.map((r) => r.server).join(', ')}`);
        assert.ok(
          records.some((r) => r.retries === 1),
          `retries: ${records.map((r) => r.retries).join(',')}`,
        );
      });

      test('retries.attempts: 1 makes one try: a request whose server refuses is not sent to another', async (t) => {
        const [live, dead] = [await protocol.live(t), protocol.url(await closedPort())];
        const velocity = await protocol.start(t, [dead, live], `${QUIET_KEYS}retries: { attempts: 1 }`);
        const records: RequestRecord[] = [];
        velocity.observe((r) => records.push(r));
        const answered = [await protocol.use(t, velocity), await protocol.use(t, velocity)];
        assert.deepEqual(answered.sort(), [false, true], 'round-robin: one request met the dead server and stayed there');
        if (!protocol.records) return;
        await eventually(() => records.length === 2, 30_000, 'two records');
        assert.deepEqual(records.map((r) => r.retryDenied ?? '-').sort(), ['-', 'attempts']);
      });

      test('a client that leaves while its server is silent gives the server back: nothing stays in flight', async (t) => {
        const silent = await startSilentServer(t);
        const velocity = await protocol.start(t, [protocol.url(silent)], QUIET_KEYS);
        const server = velocity.dataPlane.service('app')?.servers[0];
        assert.ok(server);
        const client = connect(protocol.port(velocity), '127.0.0.1');
        t.after(() => client.destroy());
        client.on('error', () => undefined);
        client.write(protocol.opening);
        await eventually(() => server.inFlight === 1, 30_000, 'the request in flight on its server');
        // Gone at once (a reset), not a half-close: a tunnel passes a FIN on and waits for the server's.
        client.resetAndDestroy();
        await eventually(() => server.inFlight === 0, 30_000, 'the server given back');
      });

      test('with no other server the failure is answered, and the record says why it was not retried', async (t) => {
        const dead = protocol.url(await closedPort());
        const velocity = await protocol.start(t, [dead], `${QUIET_KEYS}retries: { attempts: 3 }`);
        const records: RequestRecord[] = [];
        velocity.observe((r) => records.push(r));
        assert.equal(await protocol.use(t, velocity), false);
        if (!protocol.records) return;
        await eventually(() => records.length === 1, 30_000, 'the record');
        assert.equal(records[0]?.status, 502);
        assert.equal(records[0]?.errorCode, 'UPSTREAM_CONNECT_FAILED');
        assert.equal(records[0]?.retryDenied, 'no_server');
      });
    });
  }
});
