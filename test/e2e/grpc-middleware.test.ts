/**
 * A route's middleware in front of servers that speak HTTP/2, through the binary
 * with a real @grpc/grpc-js server: header rules both ways, a path rule and CORS for
 * a gRPC-Web call, basic auth answering a gRPC client with UNAUTHENTICATED; and the
 * middleware that cannot work there refused at file:line:column.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { bcrypt } from 'hash-wasm';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.ts';
import { echoClient, echoServiceYaml, grpc, startGrpcBackend, unary } from '../support/grpc/index.ts';
import { dataFrame, encodeMessage, parseBody } from '../support/grpc/web.ts';
import { startVelocityProcess, testAgent } from '../support/velocity.ts';

describe('middleware on services whose servers speak HTTP/2', () => {
  test('header rules reach the gRPC server and the client; a gRPC-Web route strips its prefix and answers CORS; basic auth answers UNAUTHENTICATED', async (t) => {
    const backend = await startGrpcBackend(t, 'g1');
    const hash = await bcrypt({ password: 'secret', salt: randomBytes(16), costFactor: 8, outputType: 'encoded' });
    const velocity = await startVelocityProcess(
      t,
      echoServiceYaml(
        [backend.url],
        `    middleware:
      - headers: { request: { set: { x-tag: "from-velocity" } }, response: { set: { x-served-by: velocity } } }
    routes:
      - paths: [/web]
        middleware:
          - strip_prefix: { prefixes: [/web] }
          - cors: { origins: ["https://app.example.com"], methods: [POST], headers: [content-type, x-grpc-web], expose_headers: [grpc-status, grpc-message] }
      - paths: [/velocity.test.Echo/SetHealth]
        middleware:
          - basic_auth: { users: { alice: "${hash}" } }
`,
      ),
    );
    const client = echoClient(t, `127.0.0.1:${velocity.port}`);
    const call = await unary(client, { text: 'tagged' });
    assert.ok(call.ok, !call.ok ? call.error.message : '');
    assert.equal(call.reply.tag, 'from-velocity', "the request rule's header reached the gRPC server");
    assert.deepEqual(call.metadata.get('x-served-by'), ['velocity'], "the response rule's header reached the gRPC client");

    // basic_auth on one method: a gRPC client without credentials gets UNAUTHENTICATED, not an HTML 401.
    const denied = await new Promise<grpc.ServiceError | null>((resolve) => client.SetHealth({ serving: true }, (e: grpc.ServiceError | null) => resolve(e)));
    assert.equal(denied?.code, grpc.status.UNAUTHENTICATED, `got ${denied?.message}`);
    const md = new grpc.Metadata();
    md.set('authorization', `Basic ${Buffer.from('alice:secret').toString('base64')}`);
    const allowed = await new Promise<grpc.ServiceError | null>((resolve) => client.SetHealth({ serving: true }, md, (e: grpc.ServiceError | null) => resolve(e)));
    assert.equal(allowed, null, 'right credentials pass');

    // gRPC-Web from a browser's origin, under /web: preflight answered, prefix stripped, CORS on the answer.
    const agent = testAgent(t);
    const preflight = await request(`${velocity.url}/web/velocity.test.Echo/Unary`, {
      dispatcher: agent,
      method: 'OPTIONS',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-grpc-web' },
    });
    await preflight.body.dump();
    assert.equal(preflight.statusCode, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://app.example.com');
    const web = await request(`${velocity.url}/web/velocity.test.Echo/Unary`, {
      dispatcher: agent,
      method: 'POST',
      headers: { origin: 'https://app.example.com', 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' },
      body: dataFrame(encodeMessage({ 1: 'from the browser' })),
    });
    const answer = parseBody(Buffer.from(await web.body.arrayBuffer()));
    assert.equal(web.statusCode, 200);
    assert.equal(web.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.match(String(web.headers['access-control-expose-headers']), /grpc-status/);
    assert.equal(web.headers['x-served-by'], 'velocity');
    assert.equal(answer.messages[0]?.[1], 'from the browser');
    assert.equal(answer.messages[0]?.[6], 'from-velocity');
    assert.equal(answer.trailers?.['grpc-status'], '0');
  });

  test('body_limit and mirror on a service whose servers speak HTTP/2 are config errors at their line and column', () => {
    const yaml = `listen: "127.0.0.1:0"
services:
  - name: shadow
    servers: [ "h2c://127.0.0.1:9" ]
  - name: echo
    servers: [ "h2c://127.0.0.1:9" ]
    middleware:
      - body_limit: { max: 1mb }
    routes:
      - paths: [/x]
        middleware:
          - mirror: { service: shadow }
`;
    assert.throws(
      () => parseConfig(yaml, 'velocity.yaml'),
      (err: Error) => {
        assert.match(err.message, /velocity\.yaml:8:\d+.*body_limit reads a body of unknown length/);
        assert.match(err.message, /velocity\.yaml:12:\d+.*mirror sends its copies over HTTP\/1\.1/);
        return true;
      },
    );
  });
});
