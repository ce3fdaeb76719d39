/**
 * body_limit and decompress on one route, in both orders: the second middleware
 * to need the body uses the one the first read (a chunked body is not waited for
 * twice), and a body_limit after decompress bounds the decoded body, so a small
 * compressed body that inflates past the limit gets 413.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { request } from 'undici';
import { startBackendProcess, startVelocityProcess, testAgent } from '../support/velocity.ts';

// Generous: a request that hangs fails here instead of holding the test forever.
const ANSWER_WAIT_MS = 60_000;

describe('body_limit with decompress on the same route', () => {
  test('both orders pass chunked and sized bodies decoded; a gzip bomb under body_limit after decompress gets 413', async (t) => {
    const backend = await startBackendProcess(t, 'b1');
    const limit = '{ body_limit: { max: 1mb } }';
    const decompress = '{ decompress: { max_size: 16mb } }';
    const service = (name: string, middleware: string[]) => `  - { name: ${name}, hosts: [${name}.test], servers: [${backend.url}], middleware: [${middleware.join(', ')}] }\n`;
    const velocity = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n${service('limit-first', [limit, decompress])}${service('decompress-first', [decompress, limit])}`,
    );
    const agent = testAgent(t);
    const post = async (host: string, body: Buffer, chunked: boolean) => {
      const res = await request(`${velocity.url}/echo`, {
        dispatcher: agent,
        method: 'POST',
        headers: { host, 'content-encoding': 'gzip' },
        body: chunked ? Readable.from([body.subarray(0, 100), body.subarray(100)]) : body,
        headersTimeout: ANSWER_WAIT_MS,
        bodyTimeout: ANSWER_WAIT_MS,
      });
      return { status: res.statusCode, code: res.headers['x-velocity-error'], body: Buffer.from(await res.body.arrayBuffer()) };
    };
    const original = Buffer.concat([randomBytes(20_000), Buffer.from('{"k":"v"},'.repeat(5_000))]);
    const encoded = gzipSync(original);
    for (const host of ['limit-first.test', 'decompress-first.test'])
      for (const chunked of [true, false]) {
        const what = `${host}, ${chunked ? 'chunked' : 'Content-Length'}`;
        const echoed = await post(host, encoded, chunked);
        assert.equal(echoed.status, 200, what);
        assert.ok(echoed.body.equals(original), `${what}: the server got the decoded body`);
      }

    // 8 MB of zeros in ~8 KB of gzip: under decompress's bound, over body_limit's once decoded.
    const bomb = gzipSync(Buffer.alloc(8 * 1024 * 1024));
    assert.ok(bomb.length < 1024 * 1024, 'the bomb itself is under the limit');
    for (const chunked of [true, false]) {
      const refused = await post('decompress-first.test', bomb, chunked);
      assert.equal(refused.status, 413, `decoded past body_limit (${chunked ? 'chunked' : 'Content-Length'})`);
      assert.equal(refused.code, 'PAYLOAD_TOO_LARGE');
    }
  });
});
