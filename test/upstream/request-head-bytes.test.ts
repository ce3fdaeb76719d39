/**
 * The request head for a server, written as bytes into a buffer shared from head to head
 * (src/upstream/request-head-bytes.ts): byte for byte what the string it replaced gave (the pieces
 * joined, each character written as latin1), for random heads; and a head whose write the kernel did
 * not take whole is not overwritten by the next one.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { SocketWriter } from '../../src/socket-writer.ts';
import { Exchange, type ExchangeSink } from '../../src/upstream/http1-exchange.ts';
import { headRetained, requestHeadBytes } from '../../src/upstream/request-head-bytes.ts';

/** The head as the string concatenation before (the reference), as latin1 bytes. */
function joined(method: string, target: string, headers: readonly string[], extraLine: string): Buffer {
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return Buffer.from(`${head}${extraLine}\r\n`, 'latin1');
}

/** A seeded generator (the same heads every run). */
function random(seed: number): (n: number) => number {
  let x = seed;
  return (n) => {
    x = (x * 1103515245 + 12345) >>> 0;
    return (x >>> 8) % n;
  };
}

/** Strings of every kind a list may hold: empty, short (copied in a loop), long (copied by latin1Write), with characters past latin1. */
function text(next: (n: number) => number): string {
  const length = [0, 1, 5, 15, 16, 17, 40, 300, 2000][next(9)] as number;
  let s = '';
  for (let k = 0; k < length; k++) {
    const kind = next(20);
    s += String.fromCharCode(kind === 0 ? 0x100 + next(0xfeff) : kind === 1 ? 0x80 + next(0x80) : 0x20 + next(0x5f));
  }
  return s;
}

test('a head written as bytes is byte for byte the joined string, for 3000 random heads (short, long, past the shared buffer, non-latin1 characters)', () => {
  const next = random(17);
  let large = 0;
  for (let n = 0; n < 3000; n++) {
    const headers: string[] = [];
    const count = next(12);
    for (let k = 0; k < count; k++) headers.push(text(next), text(next));
    const method = ['GET', 'POST', 'PROPFIND', text(next)][next(4)] as string;
    const target = next(2) === 0 ? '/' : `/${text(next)}`;
    const extra = ['', 'content-length: 0\r\n', 'transfer-encoding: chunked\r\n'][next(3)] as string;
    const expected = joined(method, target, headers, extra);
    if (expected.length > 4096) large++;
    assert.deepEqual(requestHeadBytes(method, target, headers, extra), expected, `head ${n}`);
  }
  assert.ok(large > 100, `heads larger than the shared buffer were drawn (${large})`);
});

test('heads written one after another from lists that share their first strings are each byte for byte the joined string (the bytes left in place are the right ones)', () => {
  const next = random(29);
  let previous: string[] = ['GET', '/', 'host', 'a.example'];
  let reused = 0;
  for (let n = 0; n < 5000; n++) {
    // The next list keeps a prefix of the previous one (the same strings, or copies of them), then differs.
    const keep = next(previous.length + 1);
    const list = previous.slice(0, keep).map((piece) => (next(4) === 0 ? Buffer.from(piece, 'latin1').toString('latin1') : piece));
    if (keep > 0 && next(5) === 0) {
      // The same index with a string of another length, or of the same length and other bytes.
      const at = next(keep);
      const piece = list[at] as string;
      list[at] = next(2) === 0 ? `${piece}x` : piece.length > 0 ? `${piece.slice(0, -1)}${piece.at(-1) === 'z' ? 'y' : 'z'}` : 'z';
    }
    while (list.length < 2 || list.length % 2 === 1 || next(3) > 0) {
      list.push(next(40) === 0 ? 'q'.repeat(3000) : text(next));
      if (list.length > 30 && list.length % 2 === 0) break;
    }
    const [method, target, ...headers] = list as [string, string, ...string[]];
    const extra = ['', 'content-length: 0\r\n'][next(2)] as string;
    if (next(50) === 0) headRetained();
    if (keep > 4) reused++;
    assert.deepEqual(requestHeadBytes(method, target, headers, extra), joined(method, target, headers, extra), `head ${n}`);
    previous = list;
  }
  assert.ok(reused > 1000, `heads sharing more than the request line were drawn (${reused})`);
});

const sink: ExchangeSink = {
  onInformational() {},
  onHead: () => false,
  onData: () => true,
  chunkReleased: () => true,
  onEnd() {},
  onError() {},
};

function exchange(path: string, headers: string[]): Exchange {
  return new Exchange({ method: 'GET', path, headers, body: null, responseHeaderTimeout: 0, idleTimeout: 0 }, sink);
}

test('a head still queued for a server that does not read arrives intact after the next head reused the buffer', async (t) => {
  const received = new Map<number, Buffer[]>();
  let accepted = 0;
  const peers: Socket[] = [];
  const server = createServer((socket) => {
    const chunks: Buffer[] = [];
    received.set(accepted++, chunks);
    peers.push(socket);
    // The first connection's peer reads nothing until told: its kernel buffers fill.
    if (accepted === 1) socket.pause();
    socket.on('data', (chunk) => chunks.push(chunk));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const port = (server.address() as { port: number }).port;
  const open = async (): Promise<SocketWriter> => {
    const socket = connect(port, '127.0.0.1');
    t.after(() => socket.destroy());
    await once(socket, 'connect');
    return new SocketWriter(socket, true);
  };
  const slow = await open();
  while (received.size < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  const fast = await open();
  // Fill the path to the paused peer until a write is queued: the head after it waits in the queue.
  const filler = Buffer.alloc(1024 * 1024, 0x2e);
  let filled = 0;
  while (slow.write(filler)) filled += filler.length;
  filled += filler.length;
  const first = ['host', 'first.example', 'x-request-id', 'a'.repeat(32)];
  exchange('/first', first).send(slow);
  assert.ok(slow.pendingBytes > 0, 'the first head is queued');
  // Same length, other bytes: written into the buffer the first head would still be in.
  const second = ['host', 'other.example', 'x-request-id', 'b'.repeat(32)];
  exchange('/other', second).send(fast);
  peers[0]?.resume();
  const expected = Buffer.concat([Buffer.alloc(filled, 0x2e), joined('GET', '/first', first, '')]);
  const expectedFast = joined('GET', '/other', second, '');
  const total = (k: number) => Buffer.concat(received.get(k) ?? []);
  for (let waited = 0; total(0).length < expected.length || total(1).length < expectedFast.length; waited += 20) {
    assert.ok(waited < 60_000, 'both heads arrive');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.ok(total(0).equals(expected), 'the queued head arrives as it was written');
  assert.ok(total(1).equals(expectedFast));
});
