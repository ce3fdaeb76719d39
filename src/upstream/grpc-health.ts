/**
 * The standard gRPC health check (grpc.health.v1.Health/Check) over one HTTP/2
 * connection per check. The messages are tiny, so they are encoded by hand:
 * HealthCheckRequest { string service = 1; } and
 * HealthCheckResponse { ServingStatus status = 1; } (SERVING = 1, NOT_SERVING = 2, SERVICE_UNKNOWN = 3).
 */
import { Buffer } from 'node:buffer';
import type { ConnectionOptions } from 'node:tls';
import { http2 } from '../node-http2.ts';

const STATUS_NAMES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

/** A gRPC length-prefixed message carrying HealthCheckRequest { service }. */
export function healthCheckRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  const message = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]);
  const frame = Buffer.alloc(5);
  frame.writeUInt32BE(message.length, 1);
  return Buffer.concat([frame, message]);
}

/** A protobuf base-128 varint. */
export function varint(n: number): Buffer {
  const bytes: number[] = [];
  let v = n;
  while (v > 127) {
    bytes.push((v & 127) | 128);
    v >>>= 7;
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

/** The `status` field of a HealthCheckResponse in a gRPC frame (0 = UNKNOWN when absent). */
export function servingStatus(body: Buffer): number {
  if (body.length < 5) return 0;
  const length = body.readUInt32BE(1);
  const message = body.subarray(5, 5 + length);
  let at = 0;
  while (at < message.length) {
    const tag = message[at++] as number;
    const field = tag >> 3;
    const wire = tag & 7;
    let value = 0;
    let shift = 0;
    if (wire === 0) {
      for (;;) {
        const b = message[at++] as number;
        value |= (b & 127) << shift;
        shift += 7;
        if (b < 128 || at >= message.length) break;
      }
      if (field === 1) return value;
    } else if (wire === 2) {
      let len = 0;
      for (;;) {
        const b = message[at++] as number;
        len |= (b & 127) << shift;
        shift += 7;
        if (b < 128 || at >= message.length) break;
      }
      at += len;
    } else return 0;
  }
  return 0;
}

/**
 * Runs one check against `url` (h2c:// or https://). Resolves undefined when the
 * server answers SERVING, or the reason it failed.
 */
export function grpcHealthCheck(url: string, service: string, timeoutMs: number, tls: ConnectionOptions | undefined): Promise<string | undefined> {
  const u = new URL(url);
  const secure = u.protocol === 'https:';
  const authority = `${secure ? 'https' : 'http'}://${u.host}`;
  return new Promise((resolve) => {
    const session = http2().connect(authority, secure ? { ...tls, ALPNProtocols: ['h2'] } : {});
    let done = false;
    const finish = (result: string | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      session.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish(`no answer within ${timeoutMs}ms`), timeoutMs);
    session.on('error', (err) => finish(err.message));
    const stream = session.request({
      ':method': 'POST',
      ':path': '/grpc.health.v1.Health/Check',
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': 'velocity-health-check',
    });
    const chunks: Buffer[] = [];
    let grpcStatus: string | undefined;
    let httpStatus = 0;
    stream.on('response', (headers) => {
      httpStatus = Number(headers[':status']);
      if (headers['grpc-status'] !== undefined) grpcStatus = String(headers['grpc-status']);
    });
    stream.on('trailers', (trailers) => {
      if (trailers['grpc-status'] !== undefined) grpcStatus = String(trailers['grpc-status']);
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', (err) => finish(err.message));
    stream.on('close', () => {
      if (stream.rstCode && stream.rstCode !== http2().constants.NGHTTP2_NO_ERROR) return finish(`stream reset (${stream.rstCode})`);
      if (httpStatus !== 200) return finish(`HTTP status ${httpStatus}`);
      if (grpcStatus !== '0') return finish(`grpc-status ${grpcStatus ?? 'missing'}`);
      const status = servingStatus(Buffer.concat(chunks));
      finish(status === 1 ? undefined : `health status ${STATUS_NAMES[status] ?? status}`);
    });
    stream.end(healthCheckRequest(service));
  });
}
