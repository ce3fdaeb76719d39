/**
 * Two client connections to a loopback peer, for tests of writes that stay queued: `slow`, whose peer reads
 * nothing until `resume()` and whose kernel buffers are filled first (`filled` bytes of '.'), and `plain`,
 * read at once. `received(0)` and `received(1)` are what each peer got so far.
 */
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import { SocketWriter } from '../../src/socket-writer.ts';

export interface QueuedWrites {
  slow: { socket: Socket; writer: SocketWriter };
  plain: { socket: Socket; writer: SocketWriter };
  /** Bytes of filler written to `slow` before anything else. */
  filled: number;
  filler: Buffer;
  resume(): void;
  received(k: 0 | 1): Buffer;
}

export async function queuedWrites(t: TestContext): Promise<QueuedWrites> {
  const received: Buffer[][] = [];
  const peers: Socket[] = [];
  const server = createServer((socket) => {
    const chunks: Buffer[] = [];
    received.push(chunks);
    peers.push(socket);
    // The first connection's peer reads nothing until told: its kernel buffers fill.
    if (peers.length === 1) socket.pause();
    socket.on('data', (chunk) => chunks.push(chunk));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const port = (server.address() as { port: number }).port;
  const open = async (): Promise<{ socket: Socket; writer: SocketWriter }> => {
    const socket = connect(port, '127.0.0.1');
    t.after(() => socket.destroy());
    await once(socket, 'connect');
    return { socket, writer: new SocketWriter(socket, true) };
  };
  const slow = await open();
  while (peers.length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  const plain = await open();
  const filler = Buffer.alloc(1024 * 1024, 0x2e);
  let filled = 0;
  while (slow.writer.write(filler)) filled += filler.length;
  filled += filler.length;
  return {
    slow,
    plain,
    filled,
    filler,
    resume: () => peers[0]?.resume(),
    received: (k) => Buffer.concat(received[k] ?? []),
  };
}
