/**
 * A real @grpc/grpc-js server for the gRPC tests, run as its own process so a
 * test can kill it mid-stream: `node backend.ts --name b1 [--port N] [--max-connection-age MS]`.
 * Every reply names the server and echoes the traceparent it received.
 */
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { loadEcho, loadHealth } from './protos.ts';

const { values } = parseArgs({
  options: {
    name: { type: 'string', default: 'grpc' },
    port: { type: 'string', default: '0' },
    'max-connection-age': { type: 'string' },
    'fail-unary': { type: 'string' },
    'log-calls': { type: 'boolean' },
  },
});
/** Every Unary call answered with this gRPC status (a server that says UNAVAILABLE). */
const failUnary = Number(values['fail-unary'] ?? 0);
const name = values.name as string;

interface EchoRequest {
  text: string;
  delay_ms: number;
  fail_code: number;
}
type Reply = { text: string; server: string; traceparent: string; count: number; peer?: string; tag?: string };
const traceparent = (md: grpc.Metadata) => String(md.get('traceparent')[0] ?? '');
const reply = (text: string, md: grpc.Metadata, count = 0): Reply => ({ text, server: name, traceparent: traceparent(md), count });

let serving = true;
const options: grpc.ServerOptions = {};
if (values['max-connection-age']) {
  options['grpc.max_connection_age_ms'] = Number(values['max-connection-age']);
  // Long enough that every call the server took finishes under a loaded CI machine: failures then can only be calls it never processed.
  options['grpc.max_connection_age_grace_ms'] = 60_000;
}
const server = new grpc.Server(options);
server.addService(loadEcho().Echo.service, {
  Unary(call: grpc.ServerUnaryCall<EchoRequest, Reply>, callback: grpc.sendUnaryData<Reply>) {
    const { text, delay_ms } = call.request;
    const fail_code = call.request.fail_code || failUnary;
    if (values['log-calls']) console.log(`${name} serves Unary ${text}`);
    const answer = () =>
      fail_code
        ? callback({ code: fail_code, details: `asked to fail with ${fail_code}` })
        : callback(null, { ...reply(text, call.metadata), peer: call.getPeer(), tag: String(call.metadata.get('x-tag')[0] ?? '') });
    if (delay_ms > 0) setTimeout(answer, delay_ms);
    else answer();
  },
  ServerStream(call: grpc.ServerWritableStream<{ count: number; interval_ms: number }, Reply>) {
    const { count, interval_ms } = call.request;
    let i = 0;
    const next = () => {
      if (call.cancelled) return;
      if (i >= count) return call.end();
      call.write(reply(`m${i}`, call.metadata, i));
      i++;
      if (interval_ms > 0) setTimeout(next, interval_ms);
      else setImmediate(next);
    };
    next();
  },
  ClientStream(call: grpc.ServerReadableStream<EchoRequest, Reply>, callback: grpc.sendUnaryData<Reply>) {
    console.log(`${name} serves ClientStream`);
    let count = 0;
    call.on('data', () => count++);
    call.on('end', () => callback(null, reply('done', call.metadata, count)));
    call.on('error', () => undefined);
  },
  Bidi(call: grpc.ServerDuplexStream<EchoRequest, Reply>) {
    console.log(`${name} serves Bidi`);
    let count = 0;
    call.on('data', (m: EchoRequest) => call.write(reply(m.text, call.metadata, count++)));
    call.on('end', () => call.end());
    call.on('error', () => undefined);
  },
  SetHealth(call: grpc.ServerUnaryCall<{ serving: boolean }, Reply>, callback: grpc.sendUnaryData<Reply>) {
    serving = call.request.serving;
    callback(null, reply(serving ? 'SERVING' : 'NOT_SERVING', call.metadata));
  },
});
server.addService(loadHealth().Health.service, {
  Check(_call: grpc.ServerUnaryCall<{ service: string }, { status: string }>, callback: grpc.sendUnaryData<{ status: string }>) {
    callback(null, { status: serving ? 'SERVING' : 'NOT_SERVING' });
  },
});
server.bindAsync(`127.0.0.1:${values.port}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    console.error(err.message);
    process.exit(1);
  }
  console.log(`grpc backend ${name} listening on 127.0.0.1:${port}`);
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
