/**
 * TLS toward servers: https:// backends on loopback with certificates from a
 * test CA (openssl), verification on by default, CA file, SNI name, the
 * insecure switch, health checks over HTTPS, and wss end to end.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { TestContext } from 'node:test';
import { test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { listenerAddress } from '../proxy/clients.ts';
import { captureLog } from '../proxy/log-capture.ts';
import { exchange, openWs } from '../proxy/ws-client.ts';
import { certDir, createCa, issueCert, type TestCa, type TestCert } from '../support/certs.ts';
import { eventually, get, load, startInProcess, testAgent } from '../support/velocity.ts';
import { startWsEcho } from '../support/ws-echo.ts';

interface HttpsBackend {
  url: string;
  /** SNI names the backend was asked for, one per connection. */
  servernames: (string | false)[];
}

async function startHttpsBackend(t: TestContext, name: string, cert: TestCert): Promise<HttpsBackend> {
  const servernames: (string | false)[] = [];
  const server = createServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key) }, (req, res) => {
    req.resume();
    res.setHeader('x-backend', name);
    res.end(req.url === '/headers' ? JSON.stringify(req.headers) : `hello from ${name}\n`);
  });
  server.on('secureConnection', (socket: TLSSocket) => servernames.push((socket as TLSSocket & { servername: string | false }).servername));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `https://127.0.0.1:${(server.address() as { port: number }).port}`, servernames };
}

interface Lab {
  ca: TestCa;
  rogue: TestCa;
  trusted: TestCert;
  untrusted: TestCert;
}

function lab(t: TestContext): Lab {
  const dir = certDir(t);
  const ca = createCa(dir, 'Velocity Test CA');
  const rogue = createCa(dir, 'Rogue CA');
  return { ca, rogue, trusted: issueCert(ca, ['backend.test', '127.0.0.1']), untrusted: issueCert(rogue, ['backend.test', '127.0.0.1'], { file: 'rogue-backend' }) };
}

const yaml = (servers: { url: string }[], service = '') => `
listen: 127.0.0.1:0
admin: { enabled: false }
services:
  - name: secure
    servers: [${servers.map((s) => s.url).join(', ')}]
${service}
`;

test('https:// servers signed by the CA in tls.ca are trusted and balanced', async (t) => {
  const l = lab(t);
  const backends = await Promise.all(['s1', 's2'].map((n) => startHttpsBackend(t, n, l.trusted)));
  const velocity = await startInProcess(t, yaml(backends, `    tls: { ca: ${l.ca.cert} }`));
  const agent = testAgent(t);
  const results = await load(10, 2, () => get(agent, `http://127.0.0.1:${velocity.address.port}/`));
  assert.deepEqual(
    results.map((r) => r.status),
    Array(10).fill(200),
  );
  const by = results.map((r) => r.headers['x-backend']);
  assert.equal(by.filter((b) => b === 's1').length, 5);
  assert.deepEqual(backends[0]?.servernames.slice(0, 1), [false], 'no SNI for an IP address');
});

test('an untrusted server certificate gets 502 UPSTREAM_TLS_FAILED and a log that says what to do', async (t) => {
  const l = lab(t);
  const rogue = await startHttpsBackend(t, 'rogue', l.untrusted);
  const log = captureLog();
  const velocity = await startInProcess(t, yaml([rogue], `    tls: { ca: ${l.ca.cert} }`), { logger: log.logger });
  const agent = testAgent(t);
  const res = await get(agent, `http://127.0.0.1:${velocity.address.port}/`);
  assert.equal(res.status, 502);
  assert.equal(res.headers['x-velocity-error'], 'UPSTREAM_TLS_FAILED');
  assert.ok(!res.body.includes('hello'), 'the untrusted server never got the request');
  const warning = log.find(/^TLS with https:\/\/127\.0\.0\.1:\d+ failed/)[0];
  assert.ok(warning, `logged: ${JSON.stringify(log.lines.map((x) => x.msg))}`);
  assert.match(String(warning.msg), /tls\.ca/);
  assert.equal(warning.service, 'secure');
  // Without any tls.ca, the system roots apply: a private CA is not trusted either.
  const noCa = await startInProcess(t, yaml([rogue]));
  assert.equal((await get(agent, `http://127.0.0.1:${noCa.address.port}/`)).status, 502);
});

test('a TLS failure on one server is retried on another', async (t) => {
  const l = lab(t);
  const rogue = await startHttpsBackend(t, 'rogue', l.untrusted);
  const good = await startHttpsBackend(t, 'good', l.trusted);
  const velocity = await startInProcess(t, yaml([rogue, good], `    tls: { ca: ${l.ca.cert} }\n    passive_health: { enabled: false }\n    circuit_breaker: { enabled: false }`));
  const agent = testAgent(t);
  const results = await load(6, 1, () => get(agent, `http://127.0.0.1:${velocity.address.port}/`, { method: 'POST', body: 'x' }));
  assert.deepEqual(
    results.map((r) => `${r.status} ${r.headers['x-backend']}`),
    Array(6).fill('200 good'),
  );
});

test('tls.server_name is sent as SNI and checked against the certificate', async (t) => {
  const l = lab(t);
  const internal = await startHttpsBackend(t, 'internal', issueCert(l.ca, ['internal.test'], { file: 'internal' }));
  const agent = testAgent(t);
  const without = await startInProcess(t, yaml([internal], `    tls: { ca: ${l.ca.cert} }`));
  const refused = await get(agent, `http://127.0.0.1:${without.address.port}/`);
  assert.equal(refused.status, 502, 'the certificate does not name 127.0.0.1');
  const named = await startInProcess(t, yaml([internal], `    tls: { ca: ${l.ca.cert}, server_name: internal.test }`));
  const ok = await get(agent, `http://127.0.0.1:${named.address.port}/`);
  assert.equal(ok.status, 200);
  assert.ok(internal.servernames.includes('internal.test'));
});

test('tls.insecure accepts any certificate and warns that verification is off', async (t) => {
  const l = lab(t);
  const rogue = await startHttpsBackend(t, 'rogue', l.untrusted);
  const log = captureLog();
  const velocity = await startInProcess(t, yaml([rogue], '    tls: { insecure: true }'), { logger: log.logger });
  const res = await get(testAgent(t), `http://127.0.0.1:${velocity.address.port}/`);
  assert.equal(res.status, 200);
  const warning = log.find(/NOT verified/)[0];
  assert.ok(warning);
  assert.equal(warning.level, 40);
});

test('health checks over HTTPS verify certificates like requests do', async (t) => {
  const l = lab(t);
  const good = await startHttpsBackend(t, 'good', l.trusted);
  const rogue = await startHttpsBackend(t, 'rogue', l.untrusted);
  const log = captureLog();
  const health = '    health: { type: http, path: /health, interval: 200ms, timeout: 1s, unhealthy_threshold: 2, healthy_threshold: 1 }';
  const velocity = await startInProcess(t, yaml([good, rogue], `    tls: { ca: ${l.ca.cert} }\n${health}`), { logger: log.logger });
  const servers = () => velocity.dataPlane.service('secure')?.servers ?? [];
  await eventually(() => servers()[1]?.activeUp === false, 5_000, 'the untrusted server is marked down');
  assert.equal(servers()[0]?.activeUp, true, 'the trusted one stays up');
  const down = log.find(/failed active health checks/)[0];
  assert.match(String(down?.reason), /TLS: /);
  // With tcp checks too, the TLS handshake is verified.
  const tcp = await startInProcess(t, yaml([rogue], `    tls: { ca: ${l.ca.cert} }\n${health.replace('type: http', 'type: tcp')}`));
  await eventually(() => tcp.dataPlane.service('secure')?.servers[0]?.activeUp === false, 5_000, 'a tcp check of an untrusted TLS server fails');
});

test('wss end to end: a TLS client through the HTTPS listener to wss servers signed by the test CA', async (t) => {
  const l = lab(t);
  const front = issueCert(l.ca, ['chat.test'], { file: 'front' });
  const backends = await Promise.all(['w1', 'w2'].map((n) => startWsEcho(t, n, l.trusted)));
  const velocity = await startInProcess(
    t,
    `
admin: { enabled: false }
listeners:
  - type: https
    listen: 127.0.0.1:0
    tls: { certificates: [{ cert: ${front.cert}, key: ${front.key} }] }
services:
  - name: chat
    tls: { ca: ${l.ca.cert} }
    servers: [${backends.map((b) => b.url).join(', ')}]
`,
  );
  const { port } = listenerAddress(velocity, 'https');
  const ca = readFileSync(l.ca.cert);
  const replies: string[] = [];
  for (let i = 0; i < 4; i++) {
    const ws = await openWs(`wss://127.0.0.1:${port}/live`, { ca, servername: 'chat.test', headers: { host: `chat.test:${port}` } } as Parameters<typeof openWs>[1]);
    t.after(() => ws.terminate());
    replies.push(await exchange(ws, `m${i}`));
  }
  assert.deepEqual(replies.sort(), ['w1:m0', 'w1:m2', 'w2:m1', 'w2:m3']);
  for (const b of backends) for (const h of b.upgrades) assert.equal(h['x-forwarded-proto'], 'https');
});
