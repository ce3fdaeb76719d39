/**
 * A response head and small body leave through a buffer shared from response to response
 * (src/scratch-bytes.ts): one still queued for a client that does not read arrives intact after the next
 * response reused the buffer.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { findHeadEnd, HeadError, parseRequestHead } from '../../src/proxy/http1/head-parser.ts';
import { Http1Request } from '../../src/proxy/http1/request.ts';
import { Http1Response } from '../../src/proxy/http1/response.ts';
import type { SocketWriter } from '../../src/socket-writer.ts';
import { queuedWrites } from './queued-writes.ts';

/** A response on `socket`, written through `writer`, with `body` as its whole body. */
function respond(socket: Socket, writer: SocketWriter, body: string): void {
  const bytes = Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n', 'latin1');
  const head = parseRequestHead(bytes, 0, findHeadEnd(bytes, 0, 0), 16384);
  if (head instanceof HeadError) throw new Error(head.reason);
  const req = new Http1Request(head, socket, { bodyWanted() {} });
  const res = new Http1Response(req, socket, { mayKeepAlive: () => true, responseFlushed() {}, writer }, true);
  res.sendDate = false;
  res.writeHead(200, 'OK', ['content-length', String(body.length), 'x-which', body]);
  res.end(Buffer.from(body, 'latin1'));
}

test('a response still queued for a client that does not read arrives intact after the next response reused the buffer', async (t) => {
  const { slow, plain: fast, filled, resume, received } = await queuedWrites(t);
  respond(slow.socket, slow.writer, 'first-response-body');
  assert.ok(slow.writer.pendingBytes > 0, 'the first response is queued');
  // Same length, other bytes: written into the buffer the first response would still be in.
  respond(fast.socket, fast.writer, 'other-response-body');
  resume();
  const answer = (body: string) => `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nx-which: ${body}\r\n\r\n${body}`;
  const expected = Buffer.concat([Buffer.alloc(filled, 0x2e), Buffer.from(answer('first-response-body'), 'latin1')]);
  const expectedFast = Buffer.from(answer('other-response-body'), 'latin1');
  for (let waited = 0; received(0).length < expected.length || received(1).length < expectedFast.length; waited += 20) {
    assert.ok(waited < 60_000, 'both responses arrive');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.ok(received(0).equals(expected), 'the queued response arrives as it was written');
  assert.ok(received(1).equals(expectedFast));
});
