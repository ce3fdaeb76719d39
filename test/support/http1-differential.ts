/**
 * Differential fuzzing of Velocity's HTTP/1.1 request parser against llhttp:
 * request bytes (random, and mutations of valid and hostile requests) are framed
 * by our parser and by a node:http server with its strict defaults. Ours must
 * never accept what llhttp refuses; where both accept, method, target, headers
 * and the body bytes must be the same. Shared by the fixed-seed test and the
 * long run (bench/fuzz-http1.ts).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { ChunkedDecoder } from '../../src/proxy/http1/chunked.ts';
import { checkPartialHead, findHeadEnd, HeadError, parseRequestHead } from '../../src/proxy/http1/head-parser.ts';

export const HEAD_LIMIT = 8 * 1024;

/** What a parser made of the bytes: the first request only. */
export type Framing =
  | { kind: 'refused'; why: string }
  | { kind: 'incomplete' }
  | {
      kind: 'request';
      method: string;
      target: string;
      rawHeaders: string[];
      body: string;
      bodyComplete: boolean;
      bodyError: boolean;
      tunnel?: boolean;
      /** Ours only: how the chunk framing the server passes on (up to the trailers, then CRLF) fails to read back as the same body. */
      framingProblem?: string;
    };

/** Our parser, as the server drives it: head, then the body by its framing. */
export function frameWithVelocity(bytes: Buffer): Framing {
  const end = findHeadEnd(bytes, 0, 0);
  if (end < 0) {
    const early = checkPartialHead(bytes, 0, 0, HEAD_LIMIT);
    return early ? { kind: 'refused', why: `${early.status} ${early.reason}` } : { kind: 'incomplete' };
  }
  const head = parseRequestHead(bytes, 0, end, HEAD_LIMIT);
  if (head instanceof HeadError) return { kind: 'refused', why: `${head.status} ${head.reason}` };
  const base = { kind: 'request' as const, method: head.method, target: head.target, rawHeaders: head.rawHeaders };
  if (head.chunked) {
    const parts: Buffer[] = [];
    const decoder = new ChunkedDecoder({ chunkData: (b, s, e) => parts.push(b.subarray(s, e)) }, HEAD_LIMIT);
    const at = decoder.decode(bytes, end, bytes.length);
    const body = Buffer.concat(parts).toString('latin1');
    const framingProblem = decoder.done ? framingReadBack(bytes.subarray(end, decoder.trailersFrom), body) : undefined;
    return { ...base, body, bodyComplete: decoder.done, bodyError: at < 0, framingProblem };
  }
  const length = Math.max(0, head.contentLength);
  const body = bytes.subarray(end, end + length);
  return { ...base, body: body.toString('latin1'), bodyComplete: body.length === length, bodyError: false };
}

/** llhttp through a real node:http server: one connection per input, the client half-closes after writing. */
export class LlhttpOracle {
  private server!: Server;
  private port = 0;
  private readonly pending = new Map<number, (f: Framing) => void>();

  async start(): Promise<void> {
    this.server = createServer({ maxHeaderSize: HEAD_LIMIT, requestTimeout: 0, headersTimeout: 5_000, keepAliveTimeout: 100 }, (req, res) => this.onRequest(req, res));
    // Upgrade and CONNECT heads were accepted by llhttp; what follows is a tunnel, not a body.
    const tunnel = (req: IncomingMessage, socket: import('node:stream').Duplex) => {
      this.report(req, {
        kind: 'request',
        method: req.method ?? '',
        target: req.url ?? '',
        rawHeaders: req.rawHeaders,
        body: '',
        bodyComplete: false,
        bodyError: false,
        tunnel: true,
      });
      socket.destroy();
    };
    this.server.on('upgrade', tunnel);
    this.server.on('connect', tunnel);
    this.server.on('clientError', (err: Error & { code?: string }, socket: import('node:net').Socket) => {
      const first = this.firstRequest.get(socket);
      // An error in what follows a complete first request is not about that request: its 'end' reports it.
      if (first?.complete) return void setTimeout(() => socket.destroy(), 200);
      const id = socket.remotePort;
      if (id !== undefined) this.settle(id, first ? { ...this.partial(first), bodyError: true } : { kind: 'refused', why: err.code ?? err.message });
      socket.destroy();
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as AddressInfo).port;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  private readonly firstRequest = new WeakMap<object, IncomingMessage>();
  private readonly bodies = new WeakMap<IncomingMessage, Buffer[]>();

  private partial(req: IncomingMessage): Extract<Framing, { kind: 'request' }> {
    const body = Buffer.concat(this.bodies.get(req) ?? []).toString('latin1');
    return { kind: 'request', method: req.method ?? '', target: req.url ?? '', rawHeaders: req.rawHeaders, body, bodyComplete: false, bodyError: false };
  }

  private onRequest(req: IncomingMessage, res: import('node:http').ServerResponse): void {
    if (this.firstRequest.has(req.socket)) return;
    this.firstRequest.set(req.socket, req);
    const chunks: Buffer[] = [];
    this.bodies.set(req, chunks);
    let done = false;
    const finish = (complete: boolean, error: boolean) => {
      if (done) return;
      done = true;
      this.report(req, { ...this.partial(req), bodyComplete: complete, bodyError: error });
      res.destroy();
    };
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => finish(true, false));
    req.on('error', () => finish(false, true));
    req.on('close', () => finish(req.complete, !req.complete));
  }

  private report(req: IncomingMessage, framing: Framing): void {
    // A case is known by its client's port: the server side sees it as the remote port.
    const id = req.socket.remotePort;
    if (id !== undefined) this.settle(id, framing);
  }

  private settle(id: number, framing: Framing): void {
    const resolve = this.pending.get(id);
    if (!resolve) return;
    this.pending.delete(id);
    resolve(framing);
  }

  frame(bytes: Buffer): Promise<Framing> {
    return new Promise<Framing>((resolve) => {
      const attempt = () => {
        // A connection that fails (never expected on loopback) reports no request, so the run never hangs on it.
        const failed = setTimeout(() => resolve({ kind: 'incomplete' }), 5_000);
        const socket = connect(this.port, '127.0.0.1', () => {
          clearTimeout(failed);
          const id = socket.localPort as number;
          // The port of a case still waiting for its verdict (its socket closed less than 50 ms ago): the
          // kernel may hand a closed port out again at once. Registering over it left that case's promise
          // unresolved for ever (the fuzz run hung) and gave its verdict to this one; take another port.
          if (this.pending.has(id)) {
            socket.destroy();
            return void setImmediate(attempt);
          }
          const timer = setTimeout(() => this.settle(id, { kind: 'incomplete' }), 3_000);
          this.pending.set(id, (f) => {
            clearTimeout(timer);
            socket.destroy();
            resolve(f);
          });
          // Closed without a request or a parse error: llhttp saw an incomplete head.
          socket.on('close', () => setTimeout(() => this.settle(id, { kind: 'incomplete' }), 50));
          socket.end(bytes);
        });
        socket.on('error', () => undefined);
      };
      attempt();
    });
  }
}

/**
 * Checks one input: returns a description of the disagreement, or undefined.
 * Ours may refuse more than llhttp, never less; both accepting means the same request.
 */
/** The framing passed on (what the connection sends upstream for a chunked body) must decode to the same body, ending exactly. */
function framingReadBack(framing: Buffer, body: string): string | undefined {
  const passed = Buffer.concat([framing, Buffer.from('\r\n')]);
  const parts: Buffer[] = [];
  const decoder = new ChunkedDecoder({ chunkData: (b, s, e) => parts.push(b.subarray(s, e)) }, HEAD_LIMIT);
  const at = decoder.decode(passed, 0, passed.length);
  if (!decoder.done || at !== passed.length) return `the chunk framing passed on does not read back as one body (${decoder.error ?? 'it does not end where it should'})`;
  return Buffer.concat(parts).toString('latin1') === body ? undefined : 'the chunk framing passed on decodes to another body';
}

export function disagreement(ours: Framing, theirs: Framing): string | undefined {
  if (ours.kind === 'refused' || ours.kind === 'incomplete') return undefined;
  if (ours.framingProblem) return ours.framingProblem;
  if (theirs.kind === 'refused') return `llhttp refused (${theirs.why}), Velocity accepted`;
  if (theirs.kind === 'incomplete') return 'llhttp saw no complete request, Velocity accepted one';
  if (ours.method !== theirs.method) return `method ${ours.method} vs ${theirs.method}`;
  if (ours.target !== theirs.target) return `target ${JSON.stringify(ours.target)} vs ${JSON.stringify(theirs.target)}`;
  if (JSON.stringify(ours.rawHeaders) !== JSON.stringify(theirs.rawHeaders)) return `headers ${JSON.stringify(ours.rawHeaders)} vs ${JSON.stringify(theirs.rawHeaders)}`;
  // After an upgrade head llhttp frames no body (the bytes are the tunnel's); Velocity upgrades only bodiless requests.
  if (ours.bodyError || theirs.tunnel) return undefined;
  if (ours.bodyComplete && theirs.bodyError) return 'llhttp refused the body, Velocity accepted it';
  if (ours.bodyComplete && theirs.bodyComplete && ours.body !== theirs.body) return `body ${JSON.stringify(ours.body.slice(0, 80))} vs ${JSON.stringify(theirs.body.slice(0, 80))}`;
  if (ours.bodyComplete && !theirs.bodyComplete) return 'Velocity framed a complete body, llhttp did not';
  return undefined;
}

/** mulberry32: a small seeded PRNG, so a failing case can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const METHODS = ['GET', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'DELETE', 'PATCH', 'get', 'G@T', 'CONNECT'];
const TARGETS = ['/', '/a?b=c', '/a%20b', 'http://h.example/x', '*', '/x#frag', '/\x7f', '/é', 'h.example:443', '/a b'];
const VERSIONS = ['HTTP/1.1', 'HTTP/1.0', 'HTTP/1.2', 'HTTP/2.0', 'HTTP/0.9', 'http/1.1', 'HTTP/1.1 ', 'HTTP/11', 'HTTP/1.10'];
const HEADERS = [
  'Host: a',
  'Host: a',
  'Host:',
  'host: b.example:8080',
  'Content-Length: 3',
  'Content-Length: 0',
  'content-length: 03',
  'Content-Length: 3, 3',
  'Content-Length: +3',
  'Content-Length: -1',
  'Content-Length:  3 ',
  'Content-Length: 99999999999999999999',
  'Transfer-Encoding: chunked',
  'transfer-encoding: CHUNKED',
  'Transfer-Encoding: gzip, chunked',
  'Transfer-Encoding: chunked, gzip',
  'Transfer-Encoding: identity',
  'Transfer-Encoding:\tchunked',
  'Transfer-Encoding: chunked\t',
  'Transfer-Encoding: chunked \t',
  'Transfer-Encoding : chunked',
  'Transfer_Encoding: chunked',
  'Content_Length: 3',
  'Connection: close',
  'Connection: keep-alive',
  'Connection: Upgrade',
  'Upgrade: websocket',
  'Expect: 100-continue',
  'Expect: 200-ok',
  'X-Empty:',
  'X-Tab:\tv\t',
  'X-Obs: \x80\xff',
  'X-Nul: a\x00b',
  ' X-Fold: y',
  'X-Semi: a;b',
  'Cookie: a=b',
  `X-Long: ${'x'.repeat(300)}`,
];
const BODIES = [
  '',
  'abc',
  '3\r\nabc\r\n0\r\n\r\n',
  '3;ext=1\r\nabc\r\n0\r\n\r\n',
  '3;e="q\\"x"\r\nabc\r\n0\r\n\r\n',
  '3 \r\nabc\r\n0\r\n\r\n',
  '03\r\nabc\r\n0\r\n\r\n',
  '3\r\nabcd\r\n0\r\n\r\n',
  '3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n',
  '3\r\nabc\r\n0\r\n X-T: 1\r\n\r\n',
  'fffffffffffff\r\nabc\r\n0\r\n\r\n',
  '3\nabc\n0\n\n',
  '3\r\nabc\r\n0\r\n',
  '0\r\n\r\n',
  '1;a\r\nx\r\n0;b=c\r\n\r\n',
];
const NOISE = [0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x2c, 0x3b, 0x00, 0x7f, 0x80, 0xff, 0x22, 0x5c, 0x30, 0x61, 0x5f, 0x2d, 0x3d, 0x0b, 0x0c];

function pick<T>(rand: () => number, list: readonly T[]): T {
  return list[Math.floor(rand() * list.length)] as T;
}

/** A request assembled from valid and hostile parts, then sometimes mutated byte by byte. */
export function generateRequest(rand: () => number): Buffer {
  const method = rand() < 0.8 ? pick(rand, METHODS.slice(0, 6)) : pick(rand, METHODS);
  const target = rand() < 0.8 ? pick(rand, TARGETS.slice(0, 4)) : pick(rand, TARGETS);
  const version = rand() < 0.85 ? pick(rand, VERSIONS.slice(0, 2)) : pick(rand, VERSIONS);
  const lines = [`${method} ${target} ${version}`];
  if (rand() < 0.9) lines.push('Host: a');
  const extra = Math.floor(rand() * 4);
  for (let k = 0; k < extra; k++) lines.push(pick(rand, HEADERS));
  let text = `${lines.join('\r\n')}\r\n\r\n${pick(rand, BODIES)}`;
  if (rand() < 0.1) text += 'GET /next HTTP/1.1\r\nHost: a\r\n\r\n';
  const bytes = Buffer.from(text, 'latin1');
  const mutations = rand() < 0.5 ? 0 : 1 + Math.floor(rand() * 3);
  let out: Buffer = bytes;
  for (let k = 0; k < mutations; k++) out = mutate(out, rand);
  return out;
}

function mutate(bytes: Buffer, rand: () => number): Buffer {
  const at = Math.floor(rand() * bytes.length);
  const byte = rand() < 0.8 ? pick(rand, NOISE) : Math.floor(rand() * 256);
  const how = rand();
  if (how < 0.35) {
    const out = Buffer.from(bytes);
    out[at] = byte;
    return out;
  }
  if (how < 0.7) return Buffer.concat([bytes.subarray(0, at), Buffer.from([byte]), bytes.subarray(at)]);
  if (how < 0.9) return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1)]);
  // Flip the case of a letter.
  const out = Buffer.from(bytes);
  const c = out[at] as number;
  if ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) out[at] = c ^ 0x20;
  return out;
}

export interface FuzzResult {
  cases: number;
  bothAccepted: number;
  oursRefusedOnly: number;
  failures: { seed: number; index: number; bytes: string; problem: string }[];
}

/** Runs cases until `count` or `untilMs` (epoch) is reached, `parallel` at a time. */
export async function runDifferential(oracle: LlhttpOracle, seed: number, count: number, untilMs: number, parallel = 16): Promise<FuzzResult> {
  const rand = prng(seed);
  const result: FuzzResult = { cases: 0, bothAccepted: 0, oursRefusedOnly: 0, failures: [] };
  let index = 0;
  const worker = async () => {
    while (index < count && Date.now() < untilMs) {
      const i = index++;
      const bytes = generateRequest(rand);
      const ours = frameWithVelocity(bytes);
      const theirs = await oracle.frame(bytes);
      result.cases++;
      if (ours.kind === 'request' && theirs.kind === 'request') result.bothAccepted++;
      if (ours.kind === 'refused' && theirs.kind === 'request') result.oursRefusedOnly++;
      const problem = disagreement(ours, theirs);
      if (problem) result.failures.push({ seed, index: i, bytes: bytes.toString('latin1'), problem });
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return result;
}
