/** The request record's bytesIn: the body bytes that arrived, whether sized, chunked or streamed. */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { request } from 'undici';
import type { RequestRecord } from '../../src/observe/events.ts';
import { eventually, startInProcess } from '../support/velocity.ts';

test('bytesIn counts the body bytes received: Content-Length, chunked, and streamed past the buffer limit', async (t) => {
  // A server that reads the whole body and answers its length.
  const server = createServer((req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
    });
    req.on('end', () => res.end(String(n)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const velocity = await startInProcess(
    t,
    `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: ["http://127.0.0.1:${(server.address() as { port: number }).port}"]
    retries: { buffer_body: 1kb }
`,
  );
  const records: RequestRecord[] = [];
  velocity.observe((r) => records.push(r));
  const url = `http://127.0.0.1:${velocity.address.port}`;
  const send = async (path: string, body: Buffer | AsyncIterable<Buffer>) => {
    const res = await request(`${url}${path}`, { method: 'POST', body: Buffer.isBuffer(body) ? body : Readable.from(body) });
    return res.body.text();
  };
  async function* chunked(total: number) {
    for (let sent = 0; sent < total; sent += 700) yield Buffer.alloc(Math.min(700, total - sent), 120);
  }
  assert.equal(await send('/sized', Buffer.alloc(500, 97)), '500');
  assert.equal(await send('/chunked-small', chunked(600)), '600');
  assert.equal(await send('/chunked-large', chunked(50_000)), '50000');
  assert.equal(await send('/sized-large', Buffer.alloc(20_000, 98)), '20000');
  await eventually(() => records.length === 4, 5_000, 'four records');
  assert.deepEqual(
    records.map((r) => [r.path, r.bytesIn]),
    [
      ['/sized', 500],
      ['/chunked-small', 600],
      ['/chunked-large', 50_000],
      ['/sized-large', 20_000],
    ],
  );
});
