/** gRPC test parts: real @grpc/grpc-js servers as processes, and clients over one channel. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { stopChild, watchOutput } from '../velocity.ts';
import { loadEcho } from './protos.ts';

const BACKEND = fileURLToPath(new URL('./backend.ts', import.meta.url));

export interface GrpcBackend {
  name: string;
  port: number;
  /** h2c://127.0.0.1:PORT, as Velocity's config names it. */
  url: string;
  kill(): Promise<void>;
  /** Waits until the server printed a line matching `pattern` (since its last start). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** How many lines the server printed matching `text` since its last start. */
  count(text: string): number;
  /** Starts it again on the same port. */
  restart(): Promise<void>;
}

type Cleanup = { after(fn: () => unknown): void };

export async function startGrpcBackend(t: Cleanup, name: string, extraArgs: string[] = [], port = 0): Promise<GrpcBackend> {
  const launch = async (p: number) => {
    const child = spawn(process.execPath, [BACKEND, '--name', name, '--port', String(p), ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    const output = watchOutput(child);
    const m = await output.waitFor(/listening on 127\.0\.0\.1:(\d+)/, 60_000).catch(async (err: unknown) => {
      await stopChild(child, 'SIGKILL');
      throw err;
    });
    return { child, port: Number(m[1]), output };
  };
  let current = await launch(port);
  const backend: GrpcBackend = {
    name,
    port: current.port,
    url: `h2c://127.0.0.1:${current.port}`,
    waitFor: (pattern, timeoutMs) => current.output.waitFor(pattern, timeoutMs),
    count: (text) => current.output.output().split(text).length - 1,
    kill: async () => {
      await stopChild(current.child, 'SIGKILL');
    },
    restart: async () => {
      await stopChild(current.child, 'SIGKILL');
      current = await launch(backend.port);
    },
  };
  t.after(() => stopChild(current.child, 'SIGKILL'));
  return backend;
}

export function startGrpcBackends(t: Cleanup, count: number, extraArgs: string[] = []): Promise<GrpcBackend[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => startGrpcBackend(t, `g${i + 1}`, extraArgs)));
}

export interface EchoReply {
  text: string;
  server: string;
  traceparent: string;
  count: number;
  peer: string;
  tag: string;
}

// biome-ignore lint/suspicious/noExplicitAny: a generated client
export type EchoClient = any;

/** One client = one channel = one HTTP/2 connection to Velocity. */
export function echoClient(t: Cleanup, address: string): EchoClient {
  const Echo = loadEcho().Echo;
  const client = new Echo(address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 16 << 20 });
  t.after(() => client.close());
  return client;
}

export type CallResult = { ok: true; reply: EchoReply; metadata: grpc.Metadata } | { ok: false; error: grpc.ServiceError };

/** A unary call that resolves with its reply or its error (never rejects). */
export function unary(client: EchoClient, request: object, options: { deadlineMs?: number; metadata?: grpc.Metadata } = {}): Promise<CallResult> {
  return new Promise((resolve) => {
    let metadata = new grpc.Metadata();
    const call = client.Unary(
      request,
      options.metadata ?? new grpc.Metadata(),
      options.deadlineMs ? { deadline: Date.now() + options.deadlineMs } : {},
      (error: grpc.ServiceError | null, reply: EchoReply) => resolve(error ? { ok: false, error } : { ok: true, reply, metadata }),
    );
    call.on('metadata', (m: grpc.Metadata) => {
      metadata = m;
    });
  });
}

export { grpc };

/** The start of a Velocity config: one listener taking HTTP/1.1 and h2c, no admin; services follow. */
export const H2C_LISTENER_YAML = `listeners:
  - type: http
    listen: "127.0.0.1:0"
    http2: true
admin: { enabled: false }
services:
`;

/** A config with one service `echo` over `servers` (more YAML for it in `extra`). */
export function echoServiceYaml(servers: string[], extra = ''): string {
  return `${H2C_LISTENER_YAML}  - name: echo
    servers: [ ${servers.join(', ')} ]
${extra}`;
}
