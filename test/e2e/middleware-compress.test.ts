/** Response compression through the binary: every encoding decoded byte-exact by curl and node:zlib, the rules of when not to, HTTP/2, and a 50 MB body with bounded memory. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { describe, test } from 'node:test';
import { brotliDecompressSync, createGunzip, gunzipSync, zstdDecompressSync } from 'node:zlib';
import { request } from 'undici';
import { startEcho, textOfLength } from '../middleware/echo.ts';
import { startVelocityProcess, type VelocityProcess } from '../support/velocity.ts';

const DECODE: Record<string, (b: Buffer) => Buffer> = { gzip: gunzipSync, br: brotliDecompressSync, zstd: zstdDecompressSync };

async function fetchRaw(url: string, acceptEncoding: string | undefined, headers: Record<string, string> = {}) {
  const res = await request(url, { headers: { ...(acceptEncoding === undefined ? {} : { 'accept-encoding': acceptEncoding }), ...headers } });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body };
}

/** The port of the listener that is not the first (plain) one, from the startup log. */
function secondListener(v: VelocityProcess): number {
  const ports = [...v.logs.output().matchAll(/"kind":"http","address":"127\.0\.0\.1:(\d+)"/g)].map((m) => Number(m[1]));
  const other = ports.find((p) => p !== v.port);
  assert.ok(other, v.logs.output());
  return other;
}

/** curl with the response head (dumped first on stdout: -D /dev/stderr crashes curl 7.88 on a pipe) and the body as bytes. */
function curlBytes(args: string[]): Promise<{ code: number; body: Buffer; head: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['--silent', '--show-error', '--max-time', '30', '-D', '-', ...args], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const end = stdout.indexOf('\r\n\r\n');
      resolve({
        code: err ? Number((err as { code?: unknown }).code ?? -1) : 0,
        body: stdout.subarray(end + 4),
        head: `${stdout.subarray(0, end).toString()}${stderr.toString()}`,
      });
    });
  });
}

function peakRssKb(pid: number): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
}

describe('compression', () => {
  test('gzip, br and zstd by Accept-Encoding q-values, each decoded byte-exact by node:zlib and by curl --compressed, on HTTP/1.1 and HTTP/2', async (t) => {
    const echo = await startEcho(t);
    const v = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
listeners: [{ type: http, listen: "127.0.0.1:0", http2: true }]
admin: { enabled: false }
services:
  - name: app
    servers: [${echo.url}]
    middleware: [{ compress: {} }]
`,
    );
    const plain = textOfLength(200_000);
    const url = `${v.url}/text/200000`;
    const cases: [string | undefined, string | undefined][] = [
      ['gzip', 'gzip'],
      ['br', 'br'],
      ['zstd', 'zstd'],
      ['gzip;q=0.5, br;q=0.9, zstd;q=0.1', 'br'],
      ['gzip, br, zstd', 'zstd'],
      ['br;q=0, gzip', 'gzip'],
      ['*;q=0.2, zstd;q=0', 'br'],
      ['identity', undefined],
      [undefined, undefined],
    ];
    for (const [accept, expected] of cases) {
      const res = await fetchRaw(url, accept);
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-encoding'], expected, `Accept-Encoding: ${accept}`);
      assert.equal(res.headers.vary, 'Accept-Encoding');
      assert.ok(expected === undefined || res.body.length < plain.length / 5, 'the body is smaller');
      assert.ok((expected ? (DECODE[expected] as (b: Buffer) => Buffer)(res.body) : res.body).equals(plain), `byte-exact for ${accept}`);
    }
    const h2port = secondListener(v);
    for (const encoding of ['gzip', 'br', 'zstd']) {
      for (const target of [url, `http://127.0.0.1:${h2port}/text/200000`]) {
        const h2 = target.includes(String(h2port));
        const r = await curlBytes([...(h2 ? ['--http2-prior-knowledge'] : []), '--compressed', '-H', `accept-encoding: ${encoding}`, target]);
        assert.equal(r.code, 0, r.head);
        assert.match(r.head, h2 ? /^HTTP\/2 200/ : /^HTTP\/1.1 200/);
        assert.match(r.head, new RegExp(`content-encoding: ${encoding}`, 'i'));
        assert.ok(r.body.equals(plain), `curl ${encoding} ${h2 ? 'HTTP/2' : 'HTTP/1.1'} byte-exact`);
      }
    }
  });

  test('never compressed: already encoded, no-transform, a range, a small body, a type not listed, a HEAD; Vary stays right', async (t) => {
    const echo = await startEcho(t, (req, res) => {
      const path = req.url ?? '';
      const body = textOfLength(5000);
      if (path === '/encoded') res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'br' });
      else if (path === '/no-transform') res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'public, no-transform' });
      else if (path === '/range') res.writeHead(206, { 'content-type': 'text/plain', 'content-range': 'bytes 0-4999/10000' });
      else if (path === '/vary') res.writeHead(200, { 'content-type': 'application/json', vary: 'Origin', etag: '"v1"' });
      else return false;
      res.end(body);
      return true;
    });
    const v = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [${echo.url}]
    middleware: [{ compress: { encodings: [gzip], min_size: 1kb, types: [text/*, application/json] } }]
`,
    );
    for (const path of ['/encoded', '/no-transform', '/range']) {
      const res = await fetchRaw(`${v.url}${path}`, 'gzip');
      assert.equal(res.headers['content-encoding'], path === '/encoded' ? 'br' : undefined, path);
      assert.ok(res.body.equals(textOfLength(5000)), path);
    }
    const small = await fetchRaw(`${v.url}/text/1000`, 'gzip');
    assert.equal(small.headers['content-encoding'], undefined, 'under min_size');
    const binary = await fetchRaw(`${v.url}/text/5000?type=image/png`, 'gzip');
    assert.equal(binary.headers['content-encoding'], undefined, 'type not listed');
    assert.equal(binary.headers.vary, undefined);
    const head = await request(`${v.url}/text/5000`, { method: 'HEAD', headers: { 'accept-encoding': 'gzip' } });
    await head.body.dump();
    assert.equal(head.headers['content-encoding'], undefined);
    const varied = await fetchRaw(`${v.url}/vary`, 'gzip');
    assert.equal(varied.headers['content-encoding'], 'gzip');
    assert.equal(varied.headers.vary, 'Origin, Accept-Encoding');
    assert.equal(varied.headers.etag, 'W/"v1"', 'a strong ETag becomes weak');
    assert.ok(gunzipSync(varied.body).equals(textOfLength(5000)));
  });

  test('a 50 MB response streams through gzip to a client that stops reading for a while, with bounded memory', async (t) => {
    const total = 50 * 1024 * 1024;
    let hash = createHash('sha256');
    let served = 0;
    const echo = await startEcho(t, (req, res) => {
      if (req.url !== '/big') return false;
      hash = createHash('sha256');
      served = 0;
      // Each transfer on fresh connections: a kept-alive socket keeps the receive buffer the previous fast
      // transfer autotuned (tcp_rmem's max is 32 MB here), and would hold most of the body by itself.
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': total, connection: 'close' });
      // Hex of random bytes: compresses only about 2:1, so the compressed stream is large too.
      const pump = () => {
        while (served < total) {
          const chunk = Buffer.from(randomBytes(16 * 1024).toString('hex')).subarray(0, Math.min(32 * 1024, total - served));
          served += chunk.length;
          hash.update(chunk);
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
      return true;
    });
    const v = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [${echo.url}]
    timeouts: { idle: 60s, total: 0s }
    middleware: [{ compress: { encodings: [gzip] } }]
`,
    );
    const transfer = (encoding: 'gzip' | 'identity') =>
      new Promise<{ length: number; digest: string; servedWhilePaused: number }>((resolve, reject) => {
        const got = createHash('sha256');
        let length = 0;
        let servedWhilePaused = 0;
        const req = httpRequest(`${v.url}/big`, { agent: false, headers: { 'accept-encoding': encoding } }, (res) => {
          assert.equal(res.headers['content-encoding'], encoding === 'gzip' ? 'gzip' : undefined);
          const decoded = encoding === 'gzip' ? res.pipe(createGunzip()) : res;
          res.pause();
          decoded.pause();
          // Stop reading: Velocity must hold back the server, not buffer the body.
          setTimeout(() => {
            servedWhilePaused = served;
            decoded.on('data', (c: Buffer) => {
              got.update(c);
              length += c.length;
            });
            decoded.resume();
            res.resume();
          }, 3_000);
          decoded.on('end', () => resolve({ length, digest: got.digest('hex'), servedWhilePaused }));
          decoded.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      });
    const pid = v.child.pid as number;
    // The same transfer uncompressed first: what the proxy path itself costs (garbage not yet collected).
    const plain = await transfer('identity');
    assert.equal(plain.length, total);
    const baseline = peakRssKb(pid);
    const zipped = await transfer('gzip');
    assert.equal(zipped.length, total);
    assert.equal(zipped.digest, hash.digest('hex'));
    // While the client read nothing, the server could send only what the buffers on the way hold: kernel
    // socket buffers of both legs (fresh, so not yet autotuned up), the compressed leg holding twice its
    // size in body: 12 MB was seen. Without backpressure all 50 MB leave.
    assert.ok(zipped.servedWhilePaused < total * 0.5, `${zipped.servedWhilePaused} bytes left the server while the client read nothing`);
    const grown = (peakRssKb(pid) - baseline) / 1024;
    // Never the whole body held: the growth is garbage of chunks in passing, whose peak depends on when GC
    // runs (32.4 MB was seen in CI). Whether the server was held back is the bytes check above.
    assert.ok(grown < 48, `compressing grew peak RSS by ${grown.toFixed(1)} MB beyond an uncompressed 50 MB transfer`);
  });
});
