/** Real clients for protocol tests: curl (a child process, so the event loop stays free) and Node's http2 and tls. */
import { execFile } from 'node:child_process';
import { connect as http2Connect, type IncomingHttpHeaders } from 'node:http2';
import { type PeerCertificate, connect as tlsConnect } from 'node:tls';
import type { ListenAddress } from '../../src/config-fields.ts';
import type { Velocity } from '../../src/runtime/instance.ts';

export interface CurlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function curl(args: string[], timeoutMs = 10_000): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile('curl', ['--silent', '--show-error', '--max-time', String(timeoutMs / 1000), ...args], { timeout: timeoutMs + 2_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code as number) : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The bound address of the n-th listener of a kind. */
export function listenerAddress(velocity: Velocity, kind: 'http' | 'https' | 'redirect' | 'tcp', n = 0): ListenAddress {
  const found = velocity.listeners.filter((l) => l.kind === kind)[n];
  if (!found) throw new Error(`no ${kind} listener #${n}; have ${JSON.stringify(velocity.listeners)}`);
  return found.address;
}

export interface H2Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The certificate the server presented on this connection. */
  peer: PeerCertificate;
  alpn: string | false | undefined;
}

/** One HTTP/2 request over TLS to 127.0.0.1:port with `servername` as SNI (and :authority). */
export function h2Request(
  port: number,
  servername: string,
  ca: Buffer,
  options: { path?: string; method?: string; body?: Buffer | AsyncIterable<Buffer>; checkName?: boolean; headers?: Record<string, string | string[]> } = {},
): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(`https://${servername}:${port}`, {
      ca,
      servername,
      lookup: (_host, _opts, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }] as never, 4),
      ...(options.checkName === false ? { checkServerIdentity: () => undefined } : {}),
    });
    session.on('error', reject);
    const req = session.request({ ...options.headers, ':path': options.path ?? '/', ':method': options.method ?? 'GET' });
    const chunks: Buffer[] = [];
    let status = 0;
    let headers: IncomingHttpHeaders = {};
    req.on('response', (h) => {
      headers = h;
      status = Number(h[':status']);
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const socket = session.socket as unknown as { getPeerCertificate(): PeerCertificate; alpnProtocol: string | false };
      resolve({ status, headers, body: Buffer.concat(chunks), peer: socket.getPeerCertificate(), alpn: socket.alpnProtocol });
      session.close();
    });
    req.on('error', reject);
    const body = options.body;
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else
      void (async () => {
        for await (const chunk of body) if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
        req.end();
      })();
  });
}

/** A bare TLS handshake: resolves with the protocol and certificate, or rejects with the handshake error. */
export function tlsHandshake(
  port: number,
  options: { servername?: string; ca?: Buffer; minVersion?: 'TLSv1.2' | 'TLSv1.3'; maxVersion?: 'TLSv1.2' | 'TLSv1.3' },
): Promise<{ protocol: string | null; peer: PeerCertificate }> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ...options, rejectUnauthorized: options.ca !== undefined }, () => {
      resolve({ protocol: socket.getProtocol(), peer: socket.getPeerCertificate() });
      socket.end();
    });
    socket.on('error', reject);
  });
}
