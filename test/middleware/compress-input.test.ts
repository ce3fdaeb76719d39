/**
 * What compression holds of the body it is given: chunks are copied into the encoder's own
 * reused input buffers, so the writer (the upstream connection) may read its next bytes into the
 * same buffer at once, and a compressed body costs no buffer per upstream read.
 */
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import { describe, type TestContext, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { compress, compressOptions } from '../../src/middleware/compress.ts';
import { HeadHookResponse } from '../../src/middleware/response-decorator.ts';
import { startInProcess } from '../support/velocity.ts';
import { Recorded, view } from './recorded-response.ts';

describe('compression input', () => {
  test('the writer may reuse its buffer as soon as write() returns: writableLength is 0 and the body decodes byte-exact', async () => {
    const inner = new Recorded();
    const { wrap } = compress(compressOptions.parse({ encodings: ['gzip'] }));
    assert.ok(wrap);
    const res = wrap(view, inner);
    res.writeHead(200, undefined, ['content-type', 'text/plain']);
    // One buffer, overwritten after every write, as the upstream connection does with its reads.
    const buffer = Buffer.alloc(10_000);
    const expected: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      buffer.fill(`line ${i} of a body that compresses; `);
      expected.push(Buffer.from(buffer));
      const more = res.write(buffer);
      assert.equal(res.writableLength, 0, 'no chunk written is still referenced');
      buffer.fill(0xff);
      if (!more) await new Promise<void>((resolve) => res.once('drain', resolve));
    }
    res.end();
    assert.ok(gunzipSync(await inner.body()).equals(Buffer.concat(expected)));
  });

  test('a decorator that passes chunks on reports the inner response writableLength', () => {
    const inner = new Recorded();
    const decorated = new HeadHookResponse(inner, () => {});
    assert.equal(decorated.writableLength, 0);
    inner.writableLength = 123;
    assert.equal(decorated.writableLength, 123);
  });

  test('a compressed 8 MB response through Velocity reads the server into reused buffers: a few allocations, not one per read', async (t: TestContext) => {
    const body = Buffer.alloc(8 * 1024 * 1024, 'velocity compresses this text; ');
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: app\n    servers: [http://127.0.0.1:${(server.address() as { port: number }).port}]\n    middleware: [{ compress: { encodings: [gzip] } }]\n`,
    );
    // Buffers made outside Buffer's shared pool: the connection's read buffers and the encoder's inputs.
    const slow = Buffer.allocUnsafeSlow;
    let made = 0;
    Buffer.allocUnsafeSlow = (size: number) => {
      if (size >= 1024) made++;
      return slow(size);
    };
    t.after(() => {
      Buffer.allocUnsafeSlow = slow;
    });
    const zipped = await new Promise<Buffer>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: velocity.address.port, path: '/', headers: { 'accept-encoding': 'gzip' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks)));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    Buffer.allocUnsafeSlow = slow;
    assert.ok(gunzipSync(zipped).equals(body), 'byte-exact');
    // 8 MB arrives in 512+ reads of at most 16 KB; before, each took a buffer of its own (two per pause).
    assert.ok(made < 64, `${made} buffers of 1 KB or more allocated for an 8 MB body`);
  });
});
