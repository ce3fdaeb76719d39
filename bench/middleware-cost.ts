/**
 * `node bench/middleware-cost.ts`: the CPU a route's middleware adds per request,
 * measured in this process with process.cpuUsage (CPU time, not wall time, so a
 * busy machine blurs it less than a load test): the whole middleware pass of a
 * route with three header rules (two request, one response), and compression of
 * a 1 MB body with each encoding at each level. A route without middleware runs
 * none of this (no run object is made), so its cost is the baseline 0.
 *
 *   node bench/middleware-cost.ts [--requests N]
 */
import { parseArgs } from 'node:util';
import { Agent } from 'undici';
import { buildChain } from '../src/middleware/chain.ts';
import type { MiddlewareContext } from '../src/middleware/middleware.ts';
import { middlewareEntrySchema } from '../src/middleware/registry.ts';
import type { ClientResponse } from '../src/proxy/client-response.ts';
import { MiddlewareRun, type RunSource } from '../src/proxy/middleware-run.ts';
import type { ProxyRequest } from '../src/proxy/proxy-message.ts';
import type { ServiceRuntime } from '../src/upstream/service.ts';
import { MemoryResponse } from '../test/support/memory-response.ts';

const { values } = parseArgs({ options: { requests: { type: 'string', default: '200000' } } });
const requests = Number(values.requests);
const http = new Agent();
const context: MiddlewareContext = { service: () => undefined, http, baseDir: process.cwd(), warn: () => {} };
const chainOf = (entries: unknown[]) =>
  buildChain(
    entries.map((e) => middlewareEntrySchema.parse(e)),
    context,
  );

function source(res: ClientResponse, acceptEncoding = ''): RunSource {
  const headers = { host: 'bench', 'user-agent': 'wrk', 'accept-encoding': acceptEncoding };
  return {
    req: { headers } as unknown as ProxyRequest,
    res,
    clientIp: '127.0.0.1',
    proto: 'http',
    record: { requestId: '7d1e0f2a-0000-4000-8000-000000000000', host: 'bench', method: 'GET', path: '/', status: 0, errorCode: undefined },
    cookie: () => undefined,
  };
}

const upstreamHead = ['content-type', 'text/plain', 'content-length', '21', 'date', 'Tue, 01 Dec 2026 00:00:00 GMT'];
const forwarded = ['host', 'bench', 'user-agent', 'wrk', 'x-forwarded-for', '127.0.0.1', 'x-forwarded-proto', 'http', 'x-request-id', 'r'];
const service = {} as ServiceRuntime;
/** No traffic split in these chains: no other service to look up. */
const noServices = { service: () => undefined };

function cpuUs(fn: () => void): number {
  const before = process.cpuUsage();
  fn();
  const d = process.cpuUsage(before);
  return d.user + d.system;
}

async function headerRules(): Promise<number> {
  const chain = chainOf([{ headers: { request: { set: { 'x-client': '\x24{client_ip}', 'x-env': 'bench' } }, response: { set: { 'x-served-by': 'velocity' } } } }]);
  if (!chain) throw new Error('no chain');
  const body = Buffer.from('hello from nginx!!!\n\n');
  const one = () => {
    const sink = new MemoryResponse();
    const run = new MiddlewareRun(source(sink), chain);
    // The header hooks answer synchronously; start() resolves at once.
    void run.start(service, noServices);
    run.requestHeaders([...forwarded]);
    const res = run.response();
    res.writeHead(200, undefined, [...upstreamHead]);
    res.write(body);
    res.end();
  };
  for (let i = 0; i < 20_000; i++) one();
  await new Promise((r) => setImmediate(r));
  const withRules = cpuUs(() => {
    for (let i = 0; i < requests; i++) one();
  });
  // The same head and body written with no middleware: what the rules add is the difference.
  const bare = cpuUs(() => {
    for (let i = 0; i < requests; i++) {
      const sink = new MemoryResponse();
      [...forwarded];
      sink.writeHead();
      sink.write(body);
      sink.end();
    }
  });
  return (withRules - bare) / requests;
}

async function compression(encoding: string, level: string, body: Buffer): Promise<{ cpuMsPerMb: number; ratio: number }> {
  const chain = chainOf([{ compress: { encodings: [encoding], level, types: ['text/*', 'application/octet-stream'] } }]);
  if (!chain) throw new Error('no chain');
  const rounds = 8;
  let out = 0;
  const before = process.cpuUsage();
  for (let i = 0; i < rounds; i++) {
    const sink = new MemoryResponse();
    const run = new MiddlewareRun(source(sink, encoding), chain);
    await run.start(service, noServices);
    const res = run.response();
    res.writeHead(200, undefined, ['content-type', 'text/plain', 'content-length', String(body.length)]);
    for (let at = 0; at < body.length; at += 64 * 1024) res.write(body.subarray(at, at + 64 * 1024));
    const done = new Promise((r) => sink.once('finish', r));
    res.end();
    await done;
    out = sink.bytes;
  }
  const d = process.cpuUsage(before);
  return { cpuMsPerMb: (d.user + d.system) / 1000 / rounds / (body.length / 1048576), ratio: body.length / out };
}

const json = Buffer.from(
  Array.from({ length: 12_000 }, (_, i) => JSON.stringify({ id: i, name: `item ${i}`, price: (i * 7) % 1000, tags: ['a', 'b', String(i % 13)] })).join('\n'),
).subarray(0, 1024 * 1024);

const rulesUs = await headerRules();
console.log(`Middleware cost, CPU time in this process (${requests} requests; load ${(await import('node:os')).loadavg()[0]?.toFixed(1)})\n`);
console.log(
  `| route | CPU µs per request added |\n| --- | ---: |\n| no middleware | 0 (no run object is made) |\n| three header rules (2 request, 1 response) | ${rulesUs.toFixed(2)} |\n`,
);
console.log('| compression of 1 MB of JSON lines | CPU ms per MB | ratio |\n| --- | ---: | ---: |');
for (const encoding of ['gzip', 'br', 'zstd']) {
  for (const level of ['fast', 'default']) {
    const r = await compression(encoding, level, json);
    console.log(`| ${encoding} ${level} | ${r.cpuMsPerMb.toFixed(1)} | ${r.ratio.toFixed(1)} |`);
  }
}
await http.close();
