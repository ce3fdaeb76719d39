/**
 * Http1Response.copiesWrite: a write it says it copies keeps no reference to the chunk. The upstream
 * connection then passes body bytes that lie in its thread's shared idle read buffer without copying them
 * first (src/upstream/http1-connection.ts), and the next read overwrites them: here each such chunk is
 * overwritten right after write(), on a client whose writes are queued, and must arrive as it was.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { findHeadEnd, HeadError, parseRequestHead } from '../../src/proxy/http1/head-parser.ts';
import { Http1Request } from '../../src/proxy/http1/request.ts';
import { Http1Response } from '../../src/proxy/http1/response.ts';
import type { SocketWriter } from '../../src/socket-writer.ts';
import { queuedWrites } from './queued-writes.ts';

interface Scenario {
  method: string;
  /** The Content-Length given, or undefined (chunked). */
  length: number | undefined;
  writes: number[];
}

const scenarios: Scenario[] = [
  { method: 'GET', length: 21, writes: [21] },
  { method: 'GET', length: 6000, writes: [3000, 3000] },
  { method: 'GET', length: undefined, writes: [100, 100] },
  { method: 'GET', length: 4000, writes: [4000] },
  { method: 'GET', length: 3072, writes: [3072] },
  { method: 'HEAD', length: 21, writes: [21] },
];

/** Plays the scenarios on `socket`; with `overwrite`, a chunk copiesWrite vouched for is overwritten right after its write. Returns what copiesWrite said. */
function play(socket: Socket, writer: SocketWriter, overwrite: boolean): boolean[] {
  const said: boolean[] = [];
  for (const [n, s] of scenarios.entries()) {
    const bytes = Buffer.from(`${s.method} / HTTP/1.1\r\nHost: a\r\n\r\n`, 'latin1');
    const head = parseRequestHead(bytes, 0, findHeadEnd(bytes, 0, 0), 16384);
    if (head instanceof HeadError) throw new Error(head.reason);
    const req = new Http1Request(head, socket, { bodyWanted() {} });
    const res = new Http1Response(req, socket, { mayKeepAlive: () => true, responseFlushed() {}, writer }, true);
    res.sendDate = false;
    res.writeHead(200, 'OK', s.length === undefined ? [] : ['content-length', String(s.length)]);
    for (const [k, size] of s.writes.entries()) {
      const chunk = Buffer.alloc(size, 0x41 + ((n + k) % 26));
      const copies = res.copiesWrite(size);
      said.push(copies);
      res.write(chunk);
      if (overwrite && copies) chunk.fill(0x21);
    }
    res.end();
  }
  return said;
}

test('a write copiesWrite vouched for arrives as written though its chunk was overwritten while the write was queued', async (t) => {
  const { slow, plain, filled, filler, resume, received } = await queuedWrites(t);
  const said = play(slow.socket, slow.writer, true);
  assert.ok(slow.writer.pendingBytes > filler.length, 'the responses are queued');
  // The usual case vouched for: a small first body, with its head.
  assert.deepEqual(said, [true, true, false, true, false, false, true, true]);
  play(plain.socket, plain.writer, false);
  resume();
  for (let waited = 0; received(0).length < filled + received(1).length || received(1).length === 0; waited += 20) {
    assert.ok(waited < 60_000, 'the responses arrive');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.ok(received(0).subarray(filled).equals(received(1)), 'the queued responses arrive as they were written');
});
