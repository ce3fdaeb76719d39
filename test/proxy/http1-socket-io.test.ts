/**
 * Shared-buffer reads of accepted sockets (src/proxy/http1/socket-io.ts), below net's public API: on this
 * Node they are in use (a Node upgrade that takes them away is noticed here, not silently slower), and
 * an upgrade's bytes — those that came with its head and those after the 101 — reach the server on both
 * paths (shared-buffer reads, and VELOCITY_SOCKET_IO=public). test/proxy/http1-server.test.ts runs the
 * whole server on both paths.
 */
import assert from 'node:assert/strict';
import { type AddressInfo, connect, createServer, type Server, Socket } from 'node:net';
import { test } from 'node:test';
import { adoptReads } from '../../src/proxy/http1/socket-io.ts';
import { startInProcess } from '../support/velocity.ts';

type Cleanup = { after(fn: () => unknown): void };

/** Listens on a loopback port; the cleanup closes the server without waiting for its connections (theirs is their own). */
async function listen(t: Cleanup, server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  return (server.address() as AddressInfo).port;
}

/** A connected client socket and the server's end of it. */
async function pair(t: Cleanup, serverOptions: { pauseOnConnect?: boolean } = {}): Promise<{ client: Socket; accepted: Socket }> {
  let take: (s: Socket) => void = () => undefined;
  const accepted = new Promise<Socket>((resolve) => {
    take = resolve;
  });
  const server = createServer({ allowHalfOpen: true, ...serverOptions }, (s) => take(s));
  const port = await listen(t, server);
  const client = connect(port, '127.0.0.1');
  client.on('error', () => undefined);
  t.after(() => client.destroy());
  const socket = await accepted;
  t.after(() => socket.destroy());
  await new Promise<void>((resolve) => (client.connecting ? client.once('connect', () => resolve()) : resolve()));
  return { client, accepted: socket };
}

async function until(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('an accepted plain socket is rebuilt to read into the shared buffer; one already read from keeps its stream', async (t) => {
  const { client, accepted } = await pair(t);
  const reads: string[] = [];
  const adopted = adoptReads(accepted, (buf, length) => void reads.push(buf.toString('latin1', 0, length)));
  assert.ok(adopted instanceof Socket, 'this Node lets the server read accepted sockets into a buffer of its own');
  t.after(() => adopted.destroy());
  assert.equal(adopted.remotePort, client.localPort);
  client.write('first');
  await until(() => reads.join('') === 'first', 'the first read');
  // What is written back goes out on the same connection; the original socket object goes when this one closes.
  let echoed = '';
  client.on('data', (b: Buffer) => {
    echoed += b.toString('latin1');
  });
  adopted.write('back');
  await until(() => echoed === 'back', 'the answer');
  adopted.destroy();
  await until(() => accepted.destroyed, 'the original socket to be released');

  const other = await pair(t);
  other.accepted.on('data', () => undefined);
  assert.equal(
    adoptReads(other.accepted, () => undefined),
    undefined,
    'a socket somebody reads is left alone',
  );
});

for (const io of ['shared-buffer reads', 'public'] as const) {
  test(`an upgrade's bytes sent with its head, and those after the 101, reach the server (${io})`, async (t) => {
    if (io === 'public') {
      process.env.VELOCITY_SOCKET_IO = 'public';
      t.after(() => {
        delete process.env.VELOCITY_SOCKET_IO;
      });
    }
    // A raw backend: answers the upgrade with 101, then echoes every byte upper-cased.
    let open = 0;
    const backend = createServer((s) => {
      open++;
      s.once('close', () => open--);
      let head = '';
      const onHead = (b: Buffer) => {
        head += b.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        s.removeListener('data', onHead);
        s.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
        const rest = head.slice(end + 4);
        if (rest) s.write(rest.toUpperCase());
        s.on('data', (more: Buffer) => s.write(more.toString('latin1').toUpperCase()));
      };
      s.on('data', onHead);
      s.on('error', () => undefined);
    });
    const backendPort = await listen(t, backend);
    const velocity = await startInProcess(t, `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: [http://127.0.0.1:${backendPort}]\n`);
    const socket = connect(velocity.address.port, '127.0.0.1');
    t.after(() => socket.destroy());
    let text = '';
    socket.on('data', (b: Buffer) => {
      text += b.toString('latin1');
    });
    socket.write(
      'GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nearly-bytes;',
    );
    await until(() => text.includes('EARLY-BYTES;'), 'the bytes sent with the head, echoed');
    assert.match(text, /^HTTP\/1\.1 101 /);
    socket.write('later-bytes');
    await until(() => text.includes('LATER-BYTES'), 'the bytes sent after the 101, echoed');
    // The tunnel ends with the client (else shutdown would wait for it).
    socket.destroy();
    await until(() => open === 0, 'the tunnel to close');
  });
}
