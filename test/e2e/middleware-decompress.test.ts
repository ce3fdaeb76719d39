/**
 * Request-body decompression through the binary: gzip, deflate, br and zstd bodies
 * reach the server decoded (byte-exact, with their decoded length); a decompression
 * bomb gets 413 without being inflated past the bound; a corrupt body gets 400;
 * other codings and no-transform pass bodies as sent.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { brotliCompressSync, deflateSync, gzipSync, zstdCompressSync } from 'node:zlib';
import { request } from 'undici';
import { startBackendProcess, startVelocityProcess, testAgent } from '../support/velocity.ts';

describe('decompress middleware through the binary', () => {
  test('compressed request bodies reach the server decoded; bombs get 413, corrupt bodies 400; the rest passes as sent', async (t) => {
    const backend = await startBackendProcess(t, 'b1');
    const velocity = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [ ${backend.url} ]
    middleware:
      - decompress: { encodings: [gzip, deflate, br, zstd], max_size: 1mb }
`,
    );
    const agent = testAgent(t);
    const post = async (path: string, body: Buffer | Readable, headers: Record<string, string>) => {
      const res = await request(`${velocity.url}${path}`, { dispatcher: agent, method: 'POST', headers, body });
      return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
    };
    // Half random (incompressible), half repeated: a body that is neither trivial nor tiny.
    const original = Buffer.concat([randomBytes(100_000), Buffer.from('{"k":"v"},'.repeat(20_000))]);
    const encoded = { gzip: gzipSync(original), deflate: deflateSync(original), br: brotliCompressSync(original), zstd: zstdCompressSync(original) };

    for (const [coding, body] of Object.entries(encoded)) {
      const echoed = await post('/echo', body, { 'content-encoding': coding });
      assert.equal(echoed.status, 200, coding);
      assert.ok(echoed.body.equals(original), `${coding}: the server got the decoded body, byte for byte`);
      const seen = await post('/headers', body, { 'content-encoding': coding.toUpperCase() });
      const headers = (JSON.parse(seen.body.toString()) as { headers: Record<string, string> }).headers;
      assert.equal(headers['content-encoding'], undefined, `${coding}: Content-Encoding is gone`);
      assert.equal(headers['content-length'], String(original.length), `${coding}: sent with the decoded length`);
    }
    // A body of unknown length (chunked) is decoded too.
    const chunked = await post('/echo', Readable.from([encoded.gzip.subarray(0, 1000), encoded.gzip.subarray(1000)]), { 'content-encoding': 'gzip' });
    assert.ok(chunked.body.equals(original), 'a chunked gzip body arrives decoded');

    // 64 MB of zeros in ~64 KB of gzip: refused at the 1 MB bound.
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024));
    assert.ok(bomb.length < 1024 * 1024, 'the bomb itself is small');
    const bombed = await post('/echo', bomb, { 'content-encoding': 'gzip' });
    assert.equal(bombed.status, 413);
    assert.equal(bombed.headers['x-velocity-error'], 'PAYLOAD_TOO_LARGE');

    const corrupt = await post('/echo', Buffer.from('this is not gzip at all'), { 'content-encoding': 'gzip' });
    assert.equal(corrupt.status, 400);
    assert.equal(corrupt.headers['x-velocity-error'], 'BAD_REQUEST');
    const truncated = await post('/echo', encoded.br.subarray(0, encoded.br.length >> 1), { 'content-encoding': 'br' });
    assert.equal(truncated.status, 400, 'a cut brotli stream is corrupt');

    // Passed as sent: codings it does not decode (here two layers), and no-transform.
    const layered = await post('/echo', encoded.gzip, { 'content-encoding': 'gzip, identity' });
    assert.ok(layered.body.equals(encoded.gzip));
    const noTransform = await post('/echo', encoded.gzip, { 'content-encoding': 'gzip', 'cache-control': 'no-transform' });
    assert.ok(noTransform.body.equals(encoded.gzip));
  });
});
