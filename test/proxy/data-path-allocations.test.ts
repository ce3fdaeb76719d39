/**
 * What the data path makes per request and per body chunk, to HTTP/1.1 servers and to HTTP/2 ones (issue #17: "per-request allocations
 * kept to the minimum: no AbortController, closure chains or promise per chunk on the hot path"), counted
 * in a real Velocity process: test/support/count-allocations.ts, preloaded with `--import`, counts the
 * async resources born of the connections Velocity accepted (promises, timers, …) and the AbortControllers
 * made, and writes the counts on SIGUSR2. The test warms up, takes the counts, sends a batch, takes them
 * again: what the batch made is the difference.
 *
 * The plain GET path is designed to make no promise and no timer at all (src/proxy/forwarding.ts, at its
 * top; timeouts are kept by the deadline sweep's one interval), and a streamed body no promise or timer per
 * chunk. So the bounds are a small constant independent of the batch: a promise, a timer or an
 * AbortController per request makes `GETS`, per chunk hundreds, far above it. The one timer that comes with
 * requests by design is the access log's flush timer, one per FLUSH_MS (100 ms, src/observe/access-log.ts)
 * at most whatever the rate: bounded by the batch's duration, not by its size. Nothing here asserts a
 * timing: a slower machine only widens that bound.
 *
 * Chunks are paced: the client sends a body chunk once the server has read the one before, so each chunk
 * reaches Velocity by itself (not coalesced with the next into one read) and is forwarded by itself.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createH2Server, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { type TestContext, test } from 'node:test';
import { Agent, request } from 'undici';
import type { AllocationCounts } from '../support/count-allocations.ts';
import { CLI, eventually, load, startVelocityProcess } from '../support/velocity.ts';

const COUNTER = new URL('../support/count-allocations.ts', import.meta.url).href;

/** GETs in the measured batch (after WARM_GETS): a per-request allocation shows as this many. */
const GETS = 2000;
const WARM_GETS = 500;
/** POSTs per body kind (Content-Length or chunked, 2 or 40 chunks). */
const POSTS = 10;
const FEW_CHUNKS = 2;
const MANY_CHUNKS = 40;
/**
 * Bodies above retries.buffer_body (64 KiB by default) are streamed, not held: two chunks of this size
 * already are, so every body here takes the streamed path (the one whose per-chunk cost counts).
 */
const CHUNK = 33 * 1024;
/** What a batch may make beyond the per-request and per-chunk counts, whatever its size (a pool connection reopened, a lazy first use). */
const CONSTANT = 10;
/** The access log's flush timer: one per this many ms at most (FLUSH_MS in src/observe/access-log.ts). */
const ACCESS_LOG_FLUSH_MS = 100;
const ACCESS_LOG_TIMER = /observe\/access-log\.ts/;

interface Backend {
  url: string;
  /** Body bytes read so far, of every request. */
  readonly total: number;
  /** Resolves once `total` reaches `bytes`. */
  received(bytes: number): Promise<void>;
}

/** A server in this process (HTTP/1.1, or h2c): GET answers "hello", POST reads the body and answers its length. */
async function startBackend(t: TestContext, h2 = false): Promise<Backend> {
  let total = 0;
  const waiters = new Set<{ bytes: number; resolve: () => void }>();
  const handle = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      total += chunk.length;
      for (const w of waiters) {
        if (total < w.bytes) continue;
        waiters.delete(w);
        w.resolve();
      }
    });
    req.on('end', () => res.end(req.method === 'POST' ? `got ${bytes}` : 'hello'));
  };
  const server = h2 ? createH2Server(handle) : createServer(handle);
  // Velocity's pooled connections are never closed for idleness under it (that would be reopened: not per-request work).
  if (!h2) (server as ReturnType<typeof createServer>).keepAliveTimeout = 0;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    (server as { closeAllConnections?: () => void }).closeAllConnections?.();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `${h2 ? 'h2c' : 'http'}://127.0.0.1:${port}`,
    get total() {
      return total;
    },
    received: (bytes) => (total >= bytes ? Promise.resolve() : new Promise((resolve) => waiters.add({ bytes, resolve }))),
  };
}

interface CountedVelocity {
  url: string;
  counts(): Promise<AllocationCounts>;
}

/** The Velocity binary (from source) with the counter preloaded; `$DIR` in the YAML is a temporary folder. */
async function startCounted(t: TestContext, yaml: string): Promise<CountedVelocity> {
  const dir = mkdtempSync(join(tmpdir(), 'velocity-alloc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'counts.json');
  const velocity = await startVelocityProcess(t, yaml.replaceAll('$DIR', dir), {
    bin: CLI,
    env: { NODE_OPTIONS: `--import=${COUNTER}`, VELOCITY_ALLOCATION_COUNTS: file },
  });
  return {
    url: velocity.url,
    async counts() {
      rmSync(file, { force: true });
      velocity.child.kill('SIGUSR2');
      await eventually(() => existsSync(file), 30_000, 'the allocation counts written on SIGUSR2');
      return JSON.parse(readFileSync(file, 'utf8')) as AllocationCounts;
    },
  };
}

/** A body of `chunks` chunks, each sent once the server has read the one before (a stream reading ahead only waits sooner). */
async function* paced(backend: Backend, chunks: number): AsyncGenerator<Buffer> {
  const chunk = Buffer.alloc(CHUNK, 0x61);
  let target = backend.total;
  for (let i = 0; i < chunks; i++) {
    yield chunk;
    target += CHUNK;
    await backend.received(target);
  }
}

/** What a batch made: born of connections, by type, and the making sites of promises, timers and AbortControllers. */
interface Made {
  what: string;
  /** The batch's duration as this process saw it (around both counts): the access log's timers are bounded by it. */
  ms: number;
  types: Record<string, number>;
  sites: Record<string, Record<string, number>>;
}

function made(what: string, ms: number, before: AllocationCounts, after: AllocationCounts): Made {
  const types: Record<string, number> = {};
  for (const [type, n] of Object.entries(after.fromConnections)) {
    const d = n - (before.fromConnections[type] ?? 0);
    if (d !== 0) types[type] = d;
  }
  const sites: Record<string, Record<string, number>> = {};
  for (const [type, bySite] of Object.entries(after.sites))
    for (const [site, n] of Object.entries(bySite)) {
      const d = n - (before.sites[type]?.[site] ?? 0);
      if (d !== 0) (sites[type] ??= {})[site] = d;
    }
  return { what, ms, types, sites };
}

const count = (m: Made, type: string) => m.types[type] ?? 0;
/** Timers other than the access log's flush timer. */
const timers = (m: Made) => Object.entries(m.sites.Timeout ?? {}).reduce((n, [site, k]) => (ACCESS_LOG_TIMER.test(site) ? n : n + k), 0);
const accessLogTimers = (m: Made) => count(m, 'Timeout') - timers(m);
const describe = (m: Made) => `${m.what} (${Math.round(m.ms)} ms) made ${JSON.stringify(m.types)}; where: ${JSON.stringify(m.sites, null, 1)}`;

interface Measured {
  gets: Made;
  /** Each POST batch: `POSTS` requests of FEW_CHUNKS or MANY_CHUNKS chunks, Content-Length or chunked. */
  posts: { length: { few: Made; many: Made }; chunked: { few: Made; many: Made } };
}

/** Warms Velocity up, then counts what a batch of GETs and each batch of POSTs made. */
async function measure(t: TestContext, yaml: (server: string) => string, h2 = false): Promise<Measured> {
  const backend = await startBackend(t, h2);
  const velocity = await startCounted(t, yaml(backend.url));
  // Keep-alive connections that stay open through the test: a connection opened mid-batch is not per-request work.
  const agent = new Agent({ keepAliveTimeout: 600_000, connections: 8 });
  t.after(() => agent.close());
  const gets = (n: number) =>
    load(n, 8, async () => {
      const res = await request(`${velocity.url}/`, { dispatcher: agent });
      assert.equal(await res.body.text(), 'hello');
    });
  const posts = async (n: number, chunks: number, framing: 'length' | 'chunked') => {
    for (let i = 0; i < n; i++) {
      const res = await request(`${velocity.url}/upload`, {
        dispatcher: agent,
        method: 'POST',
        // Without a length undici sends the iterable chunked.
        headers: framing === 'length' ? { 'content-length': String(chunks * CHUNK) } : {},
        body: Readable.from(paced(backend, chunks)),
      });
      assert.equal(await res.body.text(), `got ${chunks * CHUNK}`);
    }
  };
  const batch = async (what: string, send: () => Promise<unknown>): Promise<Made> => {
    const started = performance.now();
    const before = await velocity.counts();
    await send();
    const after = await velocity.counts();
    const m = made(what, performance.now() - started, before, after);
    t.diagnostic(describe(m));
    return m;
  };
  // Pools, connections and first uses settle here, out of the counts.
  await gets(WARM_GETS);
  await posts(2, FEW_CHUNKS, 'length');
  await posts(2, FEW_CHUNKS, 'chunked');
  return {
    gets: await batch(`${GETS} GETs`, () => gets(GETS)),
    posts: {
      length: {
        few: await batch(`${POSTS} POSTs of ${FEW_CHUNKS} chunks with a Content-Length`, () => posts(POSTS, FEW_CHUNKS, 'length')),
        many: await batch(`${POSTS} POSTs of ${MANY_CHUNKS} chunks with a Content-Length`, () => posts(POSTS, MANY_CHUNKS, 'length')),
      },
      chunked: {
        few: await batch(`${POSTS} chunked POSTs of ${FEW_CHUNKS} chunks`, () => posts(POSTS, FEW_CHUNKS, 'chunked')),
        many: await batch(`${POSTS} chunked POSTs of ${MANY_CHUNKS} chunks`, () => posts(POSTS, MANY_CHUNKS, 'chunked')),
      },
    },
  };
}

/** No AbortController and no timer beyond the constant (and the access log's, bounded by the batch's duration). */
function assertNoAbortControllerOrTimer(m: Made): void {
  assert.ok(count(m, 'AbortController') <= CONSTANT, `an AbortController per request: ${describe(m)}`);
  assert.ok(timers(m) <= CONSTANT, `a timer per request or chunk: ${describe(m)}`);
  assert.ok(accessLogTimers(m) <= CONSTANT + m.ms / ACCESS_LOG_FLUSH_MS, `more access-log flush timers than one per ${ACCESS_LOG_FLUSH_MS} ms: ${describe(m)}`);
}

function assertDataPath({ gets, posts }: Measured): void {
  for (const m of [gets, posts.length.few, posts.length.many, posts.chunked.few, posts.chunked.many]) {
    assertNoAbortControllerOrTimer(m);
    assert.ok(count(m, 'PROMISE') <= CONSTANT, `a promise per request or chunk: ${describe(m)}`);
  }
  // Forty chunks cost what two do: nothing made grows with the chunks (38 more per request, 380 in the batch).
  for (const { few, many } of [posts.length, posts.chunked]) {
    for (const [what, of] of [
      ['promises', (m: Made) => count(m, 'PROMISE')],
      ['timers', timers],
      ['AbortControllers', (m: Made) => count(m, 'AbortController')],
    ] as const) {
      assert.ok(of(many) <= of(few) + CONSTANT, `${what} grow with the body's chunks: ${describe(few)}\n${describe(many)}`);
    }
  }
}

/**
 * HTTP/1.1 GETs make no tick either: a response written whole is held to the turn's end, and its 'finish' is told
 * from that flush, not from a process.nextTick per response (src/socket-writer.ts, flushAtTurnEnd).
 */
function assertHttp1DataPath(measured: Measured): void {
  assertDataPath(measured);
  assert.ok(count(measured.gets, 'TickObject') <= CONSTANT, `a tick per request: ${describe(measured.gets)}`);
}

const plain = (server: string) => `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [${server}]
`;

/**
 * The bench's "features on" (bench/lib.ts withFeatures): metrics, a JSON access log to a file, active health
 * checks every second — given 10 s to answer, not the bench's 1 s: on a loaded machine three slow answers in a row
 * would take the only server out, and the requests would fail for that, not for what they made.
 */
const features = (server: string) => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
metrics: { enabled: true }
access_log: { output: $DIR/access.log, format: json }
services:
  - name: app
    servers: [${server}]
    health: { type: http, path: /, interval: 1s, timeout: 10s }
`;

/** Total and per-try timeouts: kept as deadlines the deadline sweep checks, not as a timer per request and per try. */
const timed = (server: string) => `${plain(server)}    timeouts: { total: 30s }
    retries: { per_try_timeout: 10s }
`;

test('the HTTP/1.1 path makes no AbortController, timer or promise per request or per body chunk, nor a tick per request', async (t) => {
  assertHttp1DataPath(await measure(t, plain));
});

test('the HTTP/1.1 path makes no AbortController, timer or promise per request or per body chunk with metrics, a JSON access log and health checks on', async (t) => {
  assertHttp1DataPath(await measure(t, features));
});

test('the HTTP/1.1 path makes no AbortController, timer or promise per request or per body chunk with total and per-try timeouts', async (t) => {
  assertHttp1DataPath(await measure(t, timed));
});

/**
 * A route whose middleware all answer at once (header rules, both directions): its hooks run synchronously, so it
 * makes no promise per request either (an async pass through the middleware made two per request).
 */
const headerRules = (server: string) => `${plain(server)}    middleware:
      - headers:
          request: { set: { x-client: "\${client_ip}", x-env: test } }
          response: { set: { x-served-by: velocity } }
`;

test('a route with header rules makes no AbortController, timer or promise per request or per body chunk', async (t) => {
  assertHttp1DataPath(await measure(t, headerRules));
});

// The HTTP/2-server path (src/proxy/h2-forward.ts) is held to the same: before the attempt loop took it over, 2000 GETs
// made 2000 AbortControllers, ~4300 timers (response-header and idle timers per try, the pool's idle timer each
// time a connection's last stream ended) and 14000 promises.
test('a service whose servers speak HTTP/2 (h2c) makes no AbortController, timer or promise per request or per body chunk', async (t) => {
  assertDataPath(await measure(t, plain, true));
});
