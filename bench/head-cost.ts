/**
 * CPU per request of reading and writing HTTP/1.1 heads, in process: the client's
 * request head parsed, its request object and header map, the head checks, the
 * header list for the server, the server's response parsed, its header list for the
 * client and the client's response head built and written (into a socket that only
 * counts bytes). A whole proxy run moves too much on a shared machine to show a
 * change of a few per cent; this isolates the head path. Two builds alternate round
 * by round in one process: this checkout's `dist/` (B) and `--base DIR`'s (A).
 *
 *   node bench/head-cost.ts [--base DIR] [--requests 200000] [--rounds 7] [--head wrk|browser]
 *
 * `wrk` is the head wrk sends (Host only), `browser` one with a browser's dozen headers.
 */
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureBuilt, median } from './lib.ts';

const { values: args } = parseArgs({
  options: {
    base: { type: 'string' },
    requests: { type: 'string', default: '200000' },
    rounds: { type: 'string', default: '7' },
    head: { type: 'string', default: 'wrk' },
  },
});

const REQUEST_HEADS: Record<string, string> = {
  wrk: 'GET / HTTP/1.1\r\nHost: 127.0.0.1:18110\r\n\r\n',
  browser: [
    'GET /app/items?page=2&sort=name HTTP/1.1',
    'Host: shop.example.com',
    'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
    'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
    'Accept-Language: en-GB,en;q=0.5',
    'Accept-Encoding: gzip, deflate, br, zstd',
    'Referer: https://shop.example.com/app/items',
    'Connection: keep-alive',
    'Cookie: session=8f0c2d7e41a9b3c5; theme=dark',
    'Upgrade-Insecure-Requests: 1',
    'Sec-Fetch-Dest: document',
    'Sec-Fetch-Mode: navigate',
    'Sec-Fetch-Site: same-origin',
    'Priority: u=0, i',
    '',
    '',
  ].join('\r\n'),
};

/** What nginx answers the benchmark's `return 200 "…"` with. */
const RESPONSE = Buffer.from(
  'HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 15:30:00 GMT\r\nContent-Type: application/octet-stream\r\nContent-Length: 21\r\nConnection: keep-alive\r\n\r\nhello from a backend\n',
  'latin1',
);

interface Build {
  name: string;
  /** Serves `n` requests' heads; returns the bytes written to the client (a check that the work was done). */
  run(n: number): number;
}

async function load(name: string, root: string): Promise<Build> {
  const dist = (p: string) => import(pathToFileURL(join(root, 'dist', p)).href);
  const [
    { findHeadEnd, parseRequestHead, HeadError },
    { Http1Request },
    { Http1Response },
    { checkRequestHead },
    { requestHeadersForUpstream, responseHeadersFromRaw },
    { ResponseParser },
  ] = await Promise.all([
    dist('proxy/http1/head-parser.js'),
    dist('proxy/http1/request.js'),
    dist('proxy/http1/response.js'),
    dist('proxy/request-head.js'),
    dist('proxy/headers.js'),
    dist('upstream/response-parser.js'),
  ]);
  const requestBytes = Buffer.from(REQUEST_HEADS[args.head] ?? '', 'latin1');
  let written = 0;
  const socket = {
    // Not 0: the response's end then asks for a write callback (called at once here), not a process.nextTick.
    writableLength: 1,
    destroyed: false,
    cork() {},
    uncork() {},
    write(chunk: string | Uint8Array, encoding?: unknown, done?: unknown) {
      written += chunk.length;
      if (typeof encoding === 'function') encoding();
      else if (typeof done === 'function') done();
      return true;
    },
  };
  // The client socket's writer (builds with socket-writer.ts): what the socket holds, writes as latin1. A string
  // is copied out as the socket's handle does (WriteString: flattened, then copied to the stack).
  const copy = Buffer.allocUnsafe(16 * 1024) as Buffer & { latin1Write(text: string, offset: number): number };
  // It takes every write at once (pendingBytes 0): a write buffer is not kept, and end() tells the flush on the next tick.
  const writer = {
    socket,
    pendingBytes: 0,
    write: (data: string | Uint8Array) => {
      if (typeof data === 'string') copy.latin1Write(data, 0);
      return socket.write(data, 'latin1');
    },
  };
  const owner = { mayKeepAlive: () => true, responseFlushed: () => {}, writer };
  const info = { clientIp: '127.0.0.1', priorForwardedFor: undefined, proto: 'http', host: '127.0.0.1:18110', requestId: '0b6f2a4c-3e51-4d7a-9c1e-5a8b7f3d2e10' };
  return {
    name,
    run(n) {
      written = 0;
      let upstreamHeaders = 0;
      for (let k = 0; k < n; k++) {
        // Each request in a buffer of its own, as each socket read brings one.
        const buf = Buffer.allocUnsafe(requestBytes.length);
        requestBytes.copy(buf);
        const end = findHeadEnd(buf, 0, 0);
        const head = parseRequestHead(buf, 0, end, 16384);
        if (head instanceof HeadError) throw new Error(head.reason);
        const req = new Http1Request(head, socket, { bodyWanted() {} });
        const res = new Http1Response(req, socket, owner, head.keepAlive);
        if (checkRequestHead(req, 'drop')) throw new Error('refused');
        if (req.headers.host === undefined || req.headers['user-agent'] === 'never') throw new Error('no host');
        upstreamHeaders += requestHeadersForUpstream(req.rawHeaders, info).length;
        const reply = Buffer.allocUnsafe(RESPONSE.length);
        RESPONSE.copy(reply);
        const parser = new ResponseParser({
          onInformational() {},
          onResponseHead(h: { status: number; reason: string; headers: string[]; endToEndLines?: string }) {
            // As the forwarder does: the copy-through head where the build has one (given the parsed head since
            // the parser hands out its end-to-end lines; the status, reason and list before).
            if ('endToEndLines' in h) res.writeUpstreamHead(h, undefined);
            else if (res.writeUpstreamHead) res.writeUpstreamHead(h.status, h.reason, h.headers, undefined);
            else res.writeHead(h.status, h.reason || undefined, responseHeadersFromRaw(h.headers));
            return false;
          },
          onResponseBody(chunk: Buffer) {
            res.write(chunk);
          },
          onResponseComplete() {
            res.end();
          },
        });
        parser.reset(false);
        parser.execute(reply);
      }
      if (upstreamHeaders === 0) throw new Error('no headers for the server');
      return written;
    },
  };
}

ensureBuilt((line) => process.stderr.write(`${line}\n`));
const builds = [await load('B (this tree)', resolve(import.meta.dirname, '..'))];
if (args.base) builds.unshift(await load('A (base)', resolve(args.base)));
const n = Number(args.requests);
const perRequest = new Map<string, number[]>(builds.map((b) => [b.name, []]));
// One unmeasured pass each: compiled code, not the interpreter, is what serves traffic.
for (const b of builds) b.run(20_000);
for (let round = 0; round < Number(args.rounds); round++) {
  for (const b of round % 2 === 0 ? builds : [...builds].reverse()) {
    const before = process.cpuUsage();
    const bytes = b.run(n);
    const used = process.cpuUsage(before);
    const us = (used.user + used.system) / n;
    perRequest.get(b.name)?.push(us);
    process.stderr.write(`round ${round + 1} ${b.name}: ${us.toFixed(3)} µs/request, ${(bytes / n).toFixed(0)} bytes out per request\n`);
  }
}
console.log(`| build (${args.head} head) | CPU µs per request (median) |`);
console.log('|---|---:|');
for (const [name, list] of perRequest) console.log(`| ${name} | ${median(list).toFixed(3)} |`);
const [a, b] = [...perRequest.values()];
if (a && b) console.log(`\nB÷A per round, median: ${median(a.map((x, i) => (b[i] as number) / x)).toFixed(3)}`);
