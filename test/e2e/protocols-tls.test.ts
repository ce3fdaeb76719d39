/**
 * TLS termination end to end: real certificates from openssl, Velocity
 * in-process, a real `velocity backend` process, and real clients (curl with
 * HTTP/2, Node's http2/tls/https clients).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer, connect as netConnect } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { after, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { curl, h2Request, listenerAddress, tlsHandshake } from '../proxy/clients.ts';
import { captureLog } from '../proxy/log-capture.ts';
import { certDir, createCa, issueCert, issueExpiredCert, type TestCa, type TestCert } from '../support/certs.ts';
import { type BackendProcess, BIN, eventually, get, load, startBackendProcess, startInProcess, startVelocityProcess, testAgent, watchOutput } from '../support/velocity.ts';

interface Lab {
  ca: TestCa;
  caPem: Buffer;
  a: TestCert;
  b: TestCert;
  backend: BackendProcess;
}

/** Cleanups for what the whole file shares, run after its last test. */
const fileCleanups: (() => unknown)[] = [];
after(async () => {
  for (const fn of fileCleanups.reverse()) await fn();
});
const fileScope = { after: (fn: () => unknown) => fileCleanups.push(fn) };

function issueLabCerts(ca: TestCa): Pick<Lab, 'ca' | 'caPem' | 'a' | 'b'> {
  return { ca, caPem: readFileSync(ca.cert), a: issueCert(ca, ['a.test']), b: issueCert(ca, ['b.test', '*.b.test'], { rsa: true }) };
}

let shared: Promise<Lab> | undefined;

/** One CA, two certificates and one backend process for the whole file (read-only: a test that changes files makes its own). */
function lab(): Promise<Lab> {
  shared ??= (async () => ({ ...issueLabCerts(createCa(certDir(fileScope))), backend: await startBackendProcess(fileScope, 'tls-backend') }))();
  return shared;
}

/** Certificates of its own (in a directory removed after the test), beside the shared backend. */
async function privateLab(t: TestContext): Promise<Lab> {
  return { ...(await lab()), ...issueLabCerts(createCa(certDir(t))) };
}

function httpsYaml(l: Lab, extra = '', tlsExtra = ''): string {
  return `
admin: { enabled: false }
listeners:
  - type: https
    listen: 127.0.0.1:0
    tls:
      certificates:
        - { cert: ${l.a.cert}, key: ${l.a.key} }
        - { cert: ${l.b.cert}, key: ${l.b.key} }
${tlsExtra}
${extra}
services:
  - name: web
    servers: [${l.backend.url}]
`;
}

test('curl --http2 gets HTTP/2 with the certificate for its SNI name, and the server sees X-Forwarded-Proto https and no pseudo-headers', async (t) => {
  const l = await lab();
  const velocity = await startInProcess(t, httpsYaml(l));
  const { port } = listenerAddress(velocity, 'https');
  const res = await curl(['--http2', '-v', '--cacert', l.ca.cert, '--resolve', `shop.b.test:${port}:127.0.0.1`, `https://shop.b.test:${port}/headers`, '-w', '\n%{http_version}']);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stderr, /ALPN: server accepted h2/);
  assert.match(res.stderr, /subject: CN=b\.test/);
  const [json, version] = res.stdout.split('\n');
  assert.equal(version, '2');
  const seen = JSON.parse(json as string) as { headers: Record<string, string>; rawHeaders: string[] };
  assert.equal(seen.headers['x-forwarded-proto'], 'https');
  assert.equal(seen.headers.host, `shop.b.test:${port}`);
  assert.equal(seen.headers['x-forwarded-host'], `shop.b.test:${port}`);
  assert.ok(!seen.rawHeaders.some((h, i) => i % 2 === 0 && h.startsWith(':')), `pseudo-headers leaked: ${seen.rawHeaders}`);
});

test("Node's http2 client gets each SNI name's certificate, and the default one for an unknown name", async (t) => {
  const l = await lab();
  const velocity = await startInProcess(t, httpsYaml(l));
  const { port } = listenerAddress(velocity, 'https');
  const a = await h2Request(port, 'a.test', l.caPem);
  const b = await h2Request(port, 'b.test', l.caPem);
  const other = await h2Request(port, 'unknown.test', l.caPem, { checkName: false });
  assert.equal(a.alpn, 'h2');
  assert.equal(a.status, 200);
  assert.equal(a.headers['x-backend'], 'tls-backend');
  assert.equal(a.peer.subject.CN, 'a.test');
  assert.equal(b.peer.subject.CN, 'b.test');
  assert.equal(other.peer.subject.CN, 'a.test', 'the first certificate is the default');
});

test('HTTP/1.1 clients (no h2 in ALPN) are served on the same port, and HSTS is sent when configured', async (t) => {
  const l = await lab();
  const velocity = await startInProcess(t, httpsYaml(l, '', '    hsts: { max_age: 1d, include_subdomains: true }'));
  const { port } = listenerAddress(velocity, 'https');
  const res = await curl(['--http1.1', '-i', '--cacert', l.ca.cert, '--resolve', `a.test:${port}:127.0.0.1`, `https://a.test:${port}/`]);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /^HTTP\/1\.1 200 OK/);
  assert.match(res.stdout, /strict-transport-security: max-age=86400; includeSubDomains/i);
  const h2 = await h2Request(port, 'a.test', l.caPem, { path: '/status/404' });
  assert.equal(h2.status, 404);
  assert.equal(h2.headers['strict-transport-security'], 'max-age=86400; includeSubDomains');
});

test('cookies an HTTP/2 client sends as separate fields reach the HTTP/1.1 server as one Cookie header', async (t) => {
  const l = await lab();
  const velocity = await startInProcess(t, httpsYaml(l));
  const { port } = listenerAddress(velocity, 'https');
  const res = await h2Request(port, 'a.test', l.caPem, { path: '/headers', headers: { cookie: ['session=abc', 'theme=dark'] } });
  const seen = JSON.parse(res.body.toString()) as { rawHeaders: string[] };
  const cookies = seen.rawHeaders.filter((_h, i) => i % 2 === 1 && seen.rawHeaders[i - 1]?.toLowerCase() === 'cookie');
  assert.deepEqual(cookies, ['session=abc; theme=dark']);
});

test('request bodies over HTTP/2 reach the server intact, with and without content-length', async (t) => {
  const l = await lab();
  const velocity = await startInProcess(t, httpsYaml(l));
  const { port } = listenerAddress(velocity, 'https');
  const body = Buffer.alloc(3 * 1024 * 1024 + 17, 'velocity-h2-body-');
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  async function* chunks() {
    for (let i = 0; i < body.length; i += 64 * 1024) yield body.subarray(i, i + 64 * 1024);
  }
  const streamed = await h2Request(port, 'a.test', l.caPem, { method: 'POST', path: '/echo', body: chunks() });
  assert.equal(streamed.status, 200);
  assert.equal(sha(streamed.body), sha(body), 'a body without content-length is streamed, not dropped');
  const res = await curl(['--http2', '--cacert', l.ca.cert, '--resolve', `a.test:${port}:127.0.0.1`, '--data-binary', 'small body', `https://a.test:${port}/echo`]);
  assert.equal(res.stdout, 'small body');
});

test('min_version TLSv1.3 refuses a TLS 1.2 client and accepts a TLS 1.3 one', async (t) => {
  const l = await lab();
  const velocity = await startInProcess(t, httpsYaml(l, '', '      min_version: TLSv1.3'));
  const { port } = listenerAddress(velocity, 'https');
  await assert.rejects(tlsHandshake(port, { servername: 'a.test', ca: l.caPem, maxVersion: 'TLSv1.2' }), /protocol version|alert/i);
  const ok = await tlsHandshake(port, { servername: 'a.test', ca: l.caPem });
  assert.equal(ok.protocol, 'TLSv1.3');
});

test('the default minimum is TLS 1.2 with forward-secret AEAD ciphers only', async (t) => {
  const l = await lab();
  const velocity = await startInProcess(t, httpsYaml(l));
  const { port } = listenerAddress(velocity, 'https');
  const tls12 = await tlsHandshake(port, { servername: 'a.test', ca: l.caPem, maxVersion: 'TLSv1.2' });
  assert.equal(tls12.protocol, 'TLSv1.2');
  // A client offering only a CBC suite without forward secrecy finds nothing in common.
  const res = await curl(['--tlsv1.2', '--tls-max', '1.2', '--ciphers', 'AES128-SHA', '--cacert', l.ca.cert, '--resolve', `a.test:${port}:127.0.0.1`, `https://a.test:${port}/`]);
  assert.notEqual(res.code, 0);
  assert.match(res.stderr, /handshake failure|alert/i);
});

test('changed certificate files are picked up without a restart; a broken pair keeps the old one and logs why', async (t) => {
  const l = await privateLab(t);
  const renewed = issueCert(l.ca, ['a.test'], { file: 'a-renewed' });
  const log = captureLog();
  const velocity = await startInProcess(t, httpsYaml(l), { logger: log.logger });
  const { port } = listenerAddress(velocity, 'https');
  const serialOf = async () => (await tlsHandshake(port, { servername: 'a.test', ca: l.caPem })).peer.serialNumber;
  const before = await serialOf();
  const renewedSerial = new X509Certificate(readFileSync(renewed.cert)).serialNumber;
  assert.notEqual(before, renewedSerial);
  // A key that doesn't match the current certificate: the change is refused.
  copyFileSync(l.b.key, l.a.key);
  await eventually(() => log.find(/change not applied/).length > 0, 8_000, 'the broken pair is reported');
  assert.match(String(log.find(/change not applied/)[0]?.err), /do not match/);
  assert.equal(await serialOf(), before, 'the old certificate stays in use');
  // The renewed pair lands: new connections get it.
  copyFileSync(renewed.key, l.a.key);
  copyFileSync(renewed.cert, l.a.cert);
  await eventually(async () => (await serialOf()).toUpperCase() === renewedSerial.toUpperCase(), 8_000, 'the renewed certificate is served');
  assert.ok(log.find(/TLS certificates loaded/).length > 0);
});

test('a reload with other certificates serves them on the same listener', async (t) => {
  const l = await lab();
  const c = issueCert(l.ca, ['c.test']);
  const velocity = await startInProcess(t, httpsYaml(l));
  const { port } = listenerAddress(velocity, 'https');
  const next = {
    ...velocity.config,
    listeners: velocity.config.listeners.map((x) => (x.type === 'https' ? { ...x, tls: { ...x.tls, certificates: [{ cert: c.cert, key: c.key, default: true }] } } : x)),
  };
  const result = await velocity.reload(next);
  assert.equal(result.ok, true, JSON.stringify(result.errors));
  assert.equal(listenerAddress(velocity, 'https').port, port, 'the listener stays open');
  assert.equal((await tlsHandshake(port, { servername: 'c.test', ca: l.caPem })).peer.subject.CN, 'c.test');
});

test('an expired certificate is still served, with a warning naming the file', async (t) => {
  const l = await lab();
  const old = issueExpiredCert(l.ca, ['old.test']);
  const log = captureLog();
  await startInProcess(t, httpsYaml(l, '', `        - { cert: ${old.cert}, key: ${old.key} }`), { logger: log.logger });
  const warning = log.find(/expired on/)[0];
  assert.ok(warning, 'an expiry warning was logged');
  assert.equal(warning.level, 40);
  assert.equal(warning.file, old.cert);
});

test('a port in use is an error naming the address, for HTTPS listeners and TCP services alike', async (t) => {
  const l = await lab();
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.after(() => blocker.close());
  const port = (blocker.address() as { port: number }).port;
  const https = httpsYaml(l).replace('listen: 127.0.0.1:0', `listen: 127.0.0.1:${port}`);
  await assert.rejects(startInProcess(t, https), { name: 'ListenError', message: `cannot listen on 127.0.0.1:${port}: the address is already in use` });
  const tcp = `admin: { enabled: false }\nservices:\n  - name: db\n    mode: tcp\n    listen: 127.0.0.1:${port}\n    servers: [tcp://127.0.0.1:1]\n`;
  await assert.rejects(startInProcess(t, tcp), { message: `cannot listen on 127.0.0.1:${port}: the address is already in use` });
});

test('TLS spoken to a plain port and plain HTTP spoken to the TLS port only end those connections', async (t) => {
  const l = await lab();
  const velocity = await startInProcess(t, httpsYaml(l, '').replace('listeners:', 'listen: 127.0.0.1:0\nlisteners:'));
  const plain = listenerAddress(velocity, 'http').port;
  const secure = listenerAddress(velocity, 'https').port;
  const agent = testAgent(t);
  // Wrong-protocol clients: a TLS hello to the plain port, an HTTP request to the TLS port.
  const wrongTls = Array.from(
    { length: 5 },
    () =>
      new Promise<string>((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port: plain, servername: 'a.test', rejectUnauthorized: false });
        s.on('error', (err) => resolve(err.message));
        s.on('secureConnect', () => resolve('handshake completed?!'));
      }),
  );
  const wrongPlain = Array.from(
    { length: 5 },
    () =>
      new Promise<string>((resolve) => {
        const s = netConnect(secure, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n'));
        let got = '';
        s.on('data', (d) => {
          got += d.toString('latin1');
        });
        s.on('close', () => resolve(got));
        s.on('error', () => undefined);
      }),
  );
  const good = load(40, 8, async (i) => {
    if (i % 2 === 0) return (await get(agent, `http://127.0.0.1:${plain}/`)).status;
    return (await h2Request(secure, 'a.test', l.caPem)).status;
  });
  const [tlsErrors, plainAnswers, statuses] = await Promise.all([Promise.all(wrongTls), Promise.all(wrongPlain), good]);
  for (const e of tlsErrors) assert.notEqual(e, 'handshake completed?!');
  for (const a of plainAnswers) assert.ok(!a.includes('hello from'), 'plain HTTP never reaches a server through the TLS port');
  assert.deepEqual(statuses, Array(40).fill(200));
});

test('the redirect listener sends clients to the HTTPS port with the same host, path and query (308)', async (t) => {
  const l = await lab();
  const velocity = await startInProcess(t, httpsYaml(l, '  - type: redirect\n    listen: 127.0.0.1:0'));
  const https = listenerAddress(velocity, 'https').port;
  const redirect = listenerAddress(velocity, 'redirect').port;
  const res = await curl(['-i', '-X', 'POST', '-H', 'Host: A.test:80', `http://127.0.0.1:${redirect}/cart/add?item=7`]);
  assert.match(res.stdout, /^HTTP\/1\.1 308 Permanent Redirect/);
  assert.match(res.stdout, new RegExp(`location: https://a\\.test:${https}/cart/add\\?item=7\\r\\n`, 'i'));
  assert.ok(!/strict-transport-security/i.test(res.stdout), 'no HSTS over plain HTTP');
  // curl follows it to the HTTPS listener and gets the page.
  const followed = await curl(['-L', '--cacert', l.ca.cert, '--resolve', `a.test:${https}:127.0.0.1`, '--resolve', `a.test:${redirect}:127.0.0.1`, `http://a.test:${redirect}/`]);
  assert.equal(followed.stdout, 'hello from tls-backend\n');
  const garbageHost = await curl(['-i', '-H', 'Host: bad/host', `http://127.0.0.1:${redirect}/`]);
  assert.match(garbageHost.stdout, /^HTTP\/1\.1 400/);
});

test('h2c (prior knowledge) and HTTP/1.1 share a plain listener with http2: true', async (t) => {
  const backend = await startBackendProcess(t, 'h2c-backend');
  const velocity = await startInProcess(
    t,
    `admin: { enabled: false }\nlisten: []\nlisteners:\n  - { type: http, listen: "127.0.0.1:0", http2: true }\nservices:\n  - name: web\n    servers: [${backend.url}]\n`,
  );
  const { port } = listenerAddress(velocity, 'http');
  const h2 = await curl(['--http2-prior-knowledge', '-w', '\n%{http_version}', `http://127.0.0.1:${port}/headers`]);
  const [json, version] = h2.stdout.split('\n');
  assert.equal(version, '2');
  assert.equal((JSON.parse(json as string) as { headers: Record<string, string> }).headers['x-forwarded-proto'], 'http');
  const h1 = await curl(['-w', '%{http_version}', '-o', '/dev/null', `http://127.0.0.1:${port}/`]);
  assert.equal(h1.stdout, '1.1');
});

test('h2c detection waits for enough bytes: a preface or a request line sent one byte at a time goes to the right protocol', async (t) => {
  const backend = await startBackendProcess(t, 'h2c-backend');
  const velocity = await startInProcess(
    t,
    `admin: { enabled: false }\nlisten: []\nlisteners:\n  - { type: http, listen: "127.0.0.1:0", http2: true }\nservices:\n  - name: web\n    servers: [${backend.url}]\n`,
  );
  const { port } = listenerAddress(velocity, 'http');
  const trickle = (text: Buffer) =>
    new Promise<Buffer>((resolve) => {
      const socket = netConnect(port, '127.0.0.1', async () => {
        for (let i = 0; i < 6; i++) {
          socket.write(text.subarray(i, i + 1));
          await new Promise((r) => setTimeout(r, 30));
        }
        socket.write(text.subarray(6));
      });
      socket.once('data', (d: Buffer) => {
        resolve(d);
        socket.destroy();
      });
    });
  // The HTTP/2 preface plus an empty SETTINGS frame: the server answers with its own SETTINGS frame (type 4).
  const h2 = await trickle(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]));
  assert.equal(h2[3], 4, `expected an HTTP/2 SETTINGS frame, got ${JSON.stringify(h2.toString('latin1').slice(0, 40))}`);
  const h1 = await trickle(Buffer.from('PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n'));
  assert.match(h1.toString(), /^HTTP\/1\.1 200 OK/);
});

test('shutdown lets an HTTP/2 request in flight finish, then closes the connection', async (t) => {
  const l = await lab();
  const velocity = await startInProcess(t, httpsYaml(l));
  const { port } = listenerAddress(velocity, 'https');
  const slow = h2Request(port, 'a.test', l.caPem, { path: '/?delay=3000' });
  // Closed once the request is with the server (a fixed wait let a loaded machine close before it arrived).
  await eventually(() => velocity.dataPlane.service('web')?.servers.some((s) => s.inFlight === 1) === true, 30_000, 'the request in flight');
  const closed = velocity.close();
  const res = await slow;
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), 'hello from tls-backend\n');
  await closed;
  await assert.rejects(tlsHandshake(port, { servername: 'a.test', ca: l.caPem }), /ECONNREFUSED/);
});

test('HTTPS through https.request with a client-side CA check matches the served chain', async (t) => {
  const l = await lab();
  const velocity = await startInProcess(t, httpsYaml(l));
  const { port } = listenerAddress(velocity, 'https');
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, servername: 'b.test', path: '/', ca: l.caPem, headers: { host: 'b.test' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 200);
});

test('the velocity binary serves HTTPS with HTTP/2 from a config file, and refuses to start on a missing key naming it', async (t) => {
  const l = await lab();
  const yaml = httpsYaml(l).replace('listeners:', 'listen: []\nlisteners:');
  const velocity = await startVelocityProcess(t, yaml);
  const res = await curl(['--http2', '--cacert', l.ca.cert, '--resolve', `a.test:${velocity.port}:127.0.0.1`, '-w', ' %{http_version}', `https://a.test:${velocity.port}/`]);
  assert.equal(res.stdout, 'hello from tls-backend\n 2');
  await velocity.logs.waitFor(/"listeners":\[\{"kind":"https"/);

  const missing = join(l.ca.dir, 'gone.key');
  const file = join(l.ca.dir, 'broken.yaml');
  writeFileSync(file, yaml.replace(l.a.key, missing));
  const child = spawn(process.execPath, [BIN, 'start', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = watchOutput(child);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.equal(code, 1);
  const line = output
    .output()
    .split('\n')
    .find((x) => x.includes('listeners[0].tls.certificates[0].key'));
  assert.ok(line?.startsWith(`${file}:`) && line.endsWith(`: listeners[0].tls.certificates[0].key: cannot read key file ${missing}: no such file`), output.output());
  assert.match(line ?? '', /^[^:]+:\d+:\d+: /, 'with line and column');
});
