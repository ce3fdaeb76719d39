/**
 * gRPC-Web through the binary: hand-built grpc-web requests from an HTTP/1.1 client
 * (binary and base64 text mode) reach a real @grpc/grpc-js server as gRPC over
 * HTTP/2, and its answer comes back with the trailers as the body's last frame.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:http2';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { echoServiceYaml, startGrpcBackend } from '../support/grpc/index.ts';
import { dataFrame, encodeMessage, parseBody, type WebAnswer } from '../support/grpc/web.ts';
import { startVelocityProcess, testAgent } from '../support/velocity.ts';

const ECHO = '/velocity.test.Echo';

describe('gRPC-Web through the binary', () => {
  test('binary and text-mode grpc-web calls from an HTTP/1.1 client reach a grpc-js server; trailers come back as the last frame', async (t) => {
    const backend = await startGrpcBackend(t, 'g1');
    const velocity = await startVelocityProcess(t, echoServiceYaml([backend.url]));
    const agent = testAgent(t);
    const call = async (method: string, message: Buffer, mode: 'binary' | 'text'): Promise<WebAnswer> => {
      const type = mode === 'text' ? 'application/grpc-web-text' : 'application/grpc-web+proto';
      const raw = dataFrame(message);
      const res = await request(`${velocity.url}${ECHO}/${method}`, {
        dispatcher: agent,
        method: 'POST',
        headers: { 'content-type': type, accept: type, 'x-grpc-web': '1' },
        body: mode === 'text' ? raw.toString('base64') : raw,
      });
      const bytes = Buffer.from(await res.body.arrayBuffer());
      const body = mode === 'text' ? Buffer.from(bytes.toString('latin1'), 'base64') : bytes;
      if (mode === 'text') assert.match(bytes.toString('latin1'), /^[A-Za-z0-9+/]*={0,2}$/, 'a text-mode answer is base64');
      return { status: res.statusCode, headers: res.headers, ...parseBody(body) };
    };

    for (const mode of ['binary', 'text'] as const) {
      const unary = await call('Unary', encodeMessage({ 1: `hello ${mode}` }), mode);
      assert.equal(unary.status, 200);
      assert.equal(unary.headers['content-type'], mode === 'text' ? 'application/grpc-web-text+proto' : 'application/grpc-web+proto');
      assert.equal(unary.messages.length, 1);
      assert.equal(unary.messages[0]?.[1], `hello ${mode}`, 'the reply text');
      assert.equal(unary.messages[0]?.[2], 'g1', 'the reply names the grpc-js server');
      assert.equal(unary.trailers?.['grpc-status'], '0', `${mode}: grpc-status 0 in the trailer frame`);

      const stream = await call('ServerStream', encodeMessage({ 1: 5 }), mode);
      assert.deepEqual(
        stream.messages.map((m) => m[1]),
        ['m0', 'm1', 'm2', 'm3', 'm4'],
        `${mode}: five streamed messages in order`,
      );
      assert.equal(stream.trailers?.['grpc-status'], '0');

      // A status the server answers before any message: in the headers (trailers-only) or the trailer frame.
      const failed = await call('Unary', encodeMessage({ 1: 'x', 3: 5 }), mode);
      const status = failed.trailers?.['grpc-status'] ?? failed.headers['grpc-status'];
      const message = failed.trailers?.['grpc-message'] ?? failed.headers['grpc-message'];
      assert.equal(status, '5', `${mode}: NOT_FOUND from the server`);
      assert.match(decodeURIComponent(String(message)), /asked to fail with 5/);
    }

    // The same from an HTTP/2 client (a browser talking h2 to Velocity): the answer is still grpc-web, trailers in the body.
    const session = connect(velocity.url);
    t.after(() => session.close());
    const h2 = await new Promise<{ headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': `${ECHO}/Unary`, 'content-type': 'application/grpc-web+proto' });
      const chunks: Buffer[] = [];
      let headers: Record<string, unknown> = {};
      stream.on('response', (h) => {
        headers = h;
      });
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => resolve({ headers, body: Buffer.concat(chunks) }));
      stream.on('error', reject);
      stream.end(dataFrame(encodeMessage({ 1: 'over h2' })));
    });
    assert.equal(h2.headers['content-type'], 'application/grpc-web+proto');
    const h2Body = parseBody(h2.body);
    assert.equal(h2Body.messages[0]?.[1], 'over h2');
    assert.equal(h2Body.trailers?.['grpc-status'], '0');

    // A text body that is not base64: INVALID_ARGUMENT from Velocity, as a grpc-web answer.
    const bad = await request(`${velocity.url}${ECHO}/Unary`, {
      dispatcher: agent,
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web-text' },
      body: '!!!! not base64 !!!!',
    });
    await bad.body.dump();
    assert.equal(bad.statusCode, 200);
    assert.equal(bad.headers['content-type'], 'application/grpc-web-text');
    assert.equal(bad.headers['grpc-status'], '3');
    assert.equal(bad.headers['x-velocity-error'], 'BAD_REQUEST');
  });

  test('a server lost in the middle of a grpc-web server stream ends the answer with an UNAVAILABLE trailer frame', async (t) => {
    const backend = await startGrpcBackend(t, 'g1');
    const velocity = await startVelocityProcess(t, echoServiceYaml([backend.url]));
    const res = await request(`${velocity.url}${ECHO}/ServerStream`, {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto' },
      body: dataFrame(encodeMessage({ 1: 1000, 2: 20 })),
    });
    assert.equal(res.statusCode, 200);
    const chunks: Buffer[] = [];
    let killed = false;
    for await (const chunk of res.body) {
      chunks.push(chunk as Buffer);
      // Some messages have arrived: the server dies mid-stream.
      if (!killed && Buffer.concat(chunks).length > 200) {
        killed = true;
        await backend.kill();
      }
    }
    const answer = parseBody(Buffer.concat(chunks));
    assert.ok(answer.messages.length > 0 && answer.messages.length < 1000, `${answer.messages.length} messages before the loss`);
    assert.equal(answer.trailers?.['grpc-status'], '14', 'UNAVAILABLE in the closing frame');
  });
});
