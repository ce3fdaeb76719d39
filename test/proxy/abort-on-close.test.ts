/**
 * client.abort_on_close: a client that sends its request and then closes its sending
 * side (FIN) before the answer started has given up. By default its request leaves
 * the queue and never reaches a server; with `abort_on_close: false` it keeps its
 * place and the half-closed client still reads its answer.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { describe, test } from 'node:test';
import { eventually, get, startBackends, startInProcess, testAgent } from '../support/velocity.ts';

/** Sends a request, half-closes, and collects what comes back until the connection closes. */
function halfClosedRequest(port: number, path: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(text));
    socket.end(`GET ${path} HTTP/1.1\r\nHost: app\r\n\r\n`);
  });
}

async function setup(t: Parameters<typeof startInProcess>[0], abortOnClose: boolean | undefined) {
  const [backend] = await startBackends(t, 1);
  const velocity = await startInProcess(
    t,
    `listen: "127.0.0.1:0"
admin: { enabled: false }
${abortOnClose === undefined ? '' : `client: { abort_on_close: ${abortOnClose} }\n`}services:
  - name: app
    servers: [{ url: ${backend?.url}, max_connections: 1 }]
    queue: { max_length: 5, timeout: 60s }
`,
  );
  const url = `http://127.0.0.1:${velocity.address.port}`;
  const agent = testAgent(t);
  // Requests the backend has seen, not counting these probes (asked directly, not through Velocity).
  let probes = 0;
  const arrived = async () => {
    probes++;
    const res = await get(agent, `${backend?.url}/_count`);
    return (JSON.parse(res.body) as { count: number }).count - probes;
  };
  // One slow request holds the server's only connection: what comes next waits in the queue.
  const slow = get(agent, `${url}/?delay=1500`);
  await eventually(async () => (await arrived()) === 1, 30_000, 'the slow request reached the server');
  const queue = velocity.dataPlane.queueFor(velocity.dataPlane.service('app') as never);
  return { url, port: velocity.address.port, queue, slow, agent, arrived };
}

describe('client.abort_on_close', () => {
  test('by default a request whose client half-closed before its answer leaves the queue and never reaches the server', async (t) => {
    const { url, port, slow, agent, arrived } = await setup(t, undefined);
    assert.equal(await halfClosedRequest(port, '/abandoned'), '', 'nothing is answered to a client that gave up');
    assert.equal((await slow).status, 200);
    // The queue is first in, first out: had the abandoned request stayed, it would reach the server before this one.
    assert.equal((await get(agent, `${url}/next`)).status, 200);
    assert.equal(await arrived(), 2, 'the server saw the slow request and the next one only');
  });

  test('with abort_on_close: false a half-closed client keeps its place and reads its answer', async (t) => {
    const { port, queue, slow, arrived } = await setup(t, false);
    const waiting = halfClosedRequest(port, '/kept');
    await eventually(() => queue.length === 1, 30_000, 'the half-closed request waits in the queue');
    assert.equal((await slow).status, 200);
    assert.match(await waiting, /^HTTP\/1\.1 200 /);
    assert.equal(await arrived(), 2);
  });
});
