/**
 * Differential fuzzing of the upstream response parser against llhttp (Node's
 * own HTTP client): random and mutated response heads and bodies are served by
 * a raw TCP server to node:http's client and fed, in random splits, to our
 * parser. Ours must never accept what llhttp rejects; where both accept, they
 * must agree on status, headers, 1xx responses and the body (its framing), and
 * the lines ours hands a proxy to pass on as they are must be llhttp's fields
 * without the hop-by-hop ones, written `Name: value`.
 *
 * Shared by the fixed-seed test and the long-run script (test/upstream/fuzz-responses.ts).
 */
import { request } from 'node:http';
import { createServer, type Server } from 'node:net';
import { HOP_BY_HOP } from '../../src/hop-by-hop.ts';
import { type ResponseHead, ResponseParser, type ResponseParserEvents } from '../../src/upstream/response-parser.ts';

/** mulberry32: a small seeded generator, so a failing seed can be replayed. */
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

export interface FuzzCase {
  method: 'GET' | 'HEAD';
  bytes: Buffer;
}

export interface ParseResult {
  ok: boolean;
  error?: string;
  informational: number[];
  status?: number;
  headers?: string[];
  /** The status line's version and reason. */
  version?: string;
  reason?: string;
  /** Ours only: ResponseHead.endToEndLines and withStatusLine. */
  endToEndLines?: string;
  withStatusLine?: boolean;
  body?: Buffer;
  /** Bytes that belong to the response: fewer than were sent when more followed its framing. */
  consumed?: number;
  /** Ours only: how the parser, asked for chunk framing, disagreed with itself reading the body decoded. */
  framingProblem?: string;
}

const pick = <T>(r: () => number, list: readonly T[]): T => list[Math.floor(r() * list.length)] as T;
const chance = (r: () => number, p: number) => r() < p;

const STATUSES = ['200', '200', '200', '201', '204', '206', '301', '304', '404', '500', '502', '103', '100', '199', '999', '600', '099', '20', '2000', '20a'];
const VERSIONS = ['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.2', 'http/1.1', 'HTTP/1.', 'HTTP/11'];
const REASONS = ['OK', '', 'Not Found', 'Weird \x7f', 'tab\there', 'ctl\x01', 'latin1 \xe9', ' ', 'x'.repeat(40)];
const NAMES = ['Content-Type', 'Server', 'X-Thing', 'Set-Cookie', 'Date', 'Cache-Control', 'Vary', 'ETag', 'Link', 'x', 'A-B_C', 'Keep-Alive', 'Trailer', 'Proxy-Authenticate'];
const VALUES = ['text/plain', 'a=b; Path=/', 'value with spaces', '', ' padded ', '\ttabbed\t', 'latin1 \xe9\xff', 'ctl\x01', 'nul\x00', 'del\x7f', '"quoted"', 'a,b,c'];
const CL_VALUES = ['5', '0', ' 5', '5 ', '+5', '-1', '0x5', '5,5', '5, 5', '', '99999999999999999999', '05', '1e2', '4294967296'];
const TE_VALUES = ['chunked', 'Chunked', 'CHUNKED', 'gzip, chunked', 'chunked, gzip', 'identity', 'xchunked', 'chunked ', 'chunked\t', 'gzip, chunked\t', 'chunked;q=1', ''];
const CONNECTION = ['close', 'keep-alive', 'Close', 'upgrade', 'close, x-thing', 'x-thing'];

type Framing = 'length' | 'chunked' | 'close' | 'none';

function randomBody(r: () => number): Buffer {
  const n = pick(r, [0, 1, 3, 10, 57, 200, 1000]);
  const body = Buffer.alloc(n);
  for (let i = 0; i < n; i++) body[i] = chance(r, 0.8) ? 0x61 + Math.floor(r() * 26) : Math.floor(r() * 256);
  return body;
}

function chunkedBody(r: () => number, body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < body.length) {
    const n = Math.min(body.length - at, 1 + Math.floor(r() * 64));
    let size = n.toString(16);
    if (chance(r, 0.1)) size = size.toUpperCase();
    if (chance(r, 0.05)) size = `0${size}`;
    if (chance(r, 0.03)) size = `${size} `;
    let ext = '';
    if (chance(r, 0.1)) ext = pick(r, [';a=b', ';name', '; a=b', ';a="q"', ';\x01', `;${'e'.repeat(2000)}`, ';a"q"', ';a="q"x', ';;']);
    parts.push(Buffer.from(`${size}${ext}\r\n`, 'latin1'), body.subarray(at, at + n), Buffer.from(chance(r, 0.03) ? '\n' : '\r\n', 'latin1'));
    at += n;
  }
  parts.push(Buffer.from(chance(r, 0.05) ? '00\r\n' : '0\r\n', 'latin1'));
  if (chance(r, 0.15)) parts.push(Buffer.from(pick(r, ['Trailer-A: 1\r\n', 'X: y\r\nZ: w\r\n', 'bad trailer\r\n', ' fold: x\r\n']), 'latin1'));
  parts.push(Buffer.from('\r\n', 'latin1'));
  return Buffer.concat(parts);
}

function headLine(r: () => number, name: string, value: string): string {
  let sep = ': ';
  if (chance(r, 0.03)) sep = ' : ';
  else if (chance(r, 0.05)) sep = ':';
  else if (chance(r, 0.02)) sep = ':\t';
  let end = '\r\n';
  if (chance(r, 0.02)) end = '\n';
  else if (chance(r, 0.01)) end = '\r';
  let line = `${name}${sep}${value}${end}`;
  if (chance(r, 0.02)) line += ' folded\r\n';
  return line;
}

function randomHead(r: () => number, status: string, framing: Framing, bodyLength: number): string {
  let head = `${pick(r, VERSIONS.slice(0, chance(r, 0.9) ? 3 : VERSIONS.length))} ${status}`;
  if (!chance(r, 0.1)) head += ` ${pick(r, REASONS.slice(0, chance(r, 0.9) ? 3 : REASONS.length))}`;
  head += '\r\n';
  const lines: string[] = [];
  const count = Math.floor(r() * 5);
  for (let i = 0; i < count; i++)
    lines.push(headLine(r, chance(r, 0.95) ? pick(r, NAMES) : pick(r, ['Bad Name', 'Na\x01me', 'Ä', '', 'x@y']), pick(r, VALUES.slice(0, chance(r, 0.85) ? 6 : VALUES.length))));
  if (framing === 'length') lines.push(headLine(r, pick(r, ['Content-Length', 'content-length', 'CONTENT-LENGTH']), chance(r, 0.85) ? String(bodyLength) : pick(r, CL_VALUES)));
  if (framing === 'chunked') lines.push(headLine(r, pick(r, ['Transfer-Encoding', 'transfer-encoding']), chance(r, 0.8) ? 'chunked' : pick(r, TE_VALUES)));
  if (chance(r, 0.05)) lines.push(headLine(r, 'Content-Length', chance(r, 0.5) ? String(bodyLength) : pick(r, CL_VALUES)));
  if (chance(r, 0.05)) lines.push(headLine(r, 'Transfer-Encoding', pick(r, TE_VALUES)));
  if (chance(r, 0.15)) lines.push(headLine(r, 'Connection', pick(r, CONNECTION)));
  for (let i = lines.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [lines[i], lines[j]] = [lines[j] as string, lines[i] as string];
  }
  return `${head}${lines.join('')}\r\n`;
}

function mutate(r: () => number, bytes: Buffer): Buffer {
  const out = [...bytes];
  const n = 1 + Math.floor(r() * 3);
  for (let k = 0; k < n && out.length > 0; k++) {
    const at = Math.floor(r() * out.length);
    const op = Math.floor(r() * 4);
    if (op === 0) out[at] = Math.floor(r() * 256);
    else if (op === 1) out.splice(at, 0, pick(r, [0x0d, 0x0a, 0x20, 0x09, 0x00, 0x3a, 0x30, 0x7f, 0xff]));
    else if (op === 2) out.splice(at, 1);
    else out.splice(at, 0, ...out.slice(at, at + Math.floor(r() * 8)));
  }
  return Buffer.from(out);
}

/** One random response, as a server would write it (then close). */
export function randomCase(r: () => number): FuzzCase {
  const method = chance(r, 0.1) ? 'HEAD' : 'GET';
  const parts: Buffer[] = [];
  if (chance(r, 0.1)) parts.push(Buffer.from(randomHead(r, pick(r, ['100', '103', '102']), 'none', 0), 'latin1'));
  const status = pick(r, STATUSES.slice(0, chance(r, 0.9) ? 11 : STATUSES.length));
  const framing = pick(r, ['length', 'length', 'chunked', 'chunked', 'close', 'none'] as const);
  const body = randomBody(r);
  parts.push(Buffer.from(randomHead(r, status, framing, body.length), 'latin1'));
  if (framing === 'chunked') parts.push(chunkedBody(r, body));
  else if (framing !== 'none') parts.push(body);
  if (chance(r, 0.1)) parts.push(Buffer.from(pick(r, ['HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'garbage', '\r\n']), 'latin1'));
  let bytes: Buffer = Buffer.concat(parts);
  if (chance(r, 0.3)) bytes = mutate(r, bytes);
  return { method, bytes };
}

/**
 * Our parser over the bytes, split at random points, then the server's close; read twice, the
 * body decoded and with its chunk framing passed on, which must agree: the same verdict, and
 * framing that decodes (read again by the parser) to the same body.
 */
export function parseOurs(c: FuzzCase, r: () => number): ParseResult {
  const splits: number[] = [];
  for (let at = 0; at < c.bytes.length; ) {
    const n = Math.max(1, Math.floor(r() * r() * c.bytes.length));
    splits.push(n);
    at += n;
  }
  const decoded = parseOnce(c, splits, false);
  const framed = parseOnce(c, splits, true);
  decoded.framingProblem = framingProblem(decoded, framed);
  // A parser that read other responses before remembers the last head: it must read this one (twice: the
  // second time with it remembered) exactly as a fresh parser does.
  for (let k = 0; k < 2 && !decoded.framingProblem; k++) {
    if (JSON.stringify(parseOnce(c, splits, false, true)) !== JSON.stringify(decoded)) decoded.framingProblem = 'a parser that read responses before reads this one otherwise';
  }
  return decoded;
}

/** Events passed on to the reading under way: one parser reads case after case (see parseOurs). */
let warmTarget: ResponseParserEvents | undefined;
const warmParser = new ResponseParser({
  onInformational: (status, headers) => warmTarget?.onInformational(status, headers),
  onResponseHead: (head) => warmTarget?.onResponseHead(head) ?? false,
  onResponseBody: (chunk) => warmTarget?.onResponseBody(chunk),
  onResponseComplete: () => warmTarget?.onResponseComplete(),
});

const CHUNKED_HEAD = Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n', 'latin1');

function framingProblem(decoded: ParseResult & { chunked?: boolean }, framed: ParseResult & { chunked?: boolean }): string | undefined {
  if (decoded.ok !== framed.ok) return `framed reading ${framed.ok ? 'accepts' : `rejects (${framed.error})`}, decoded ${decoded.ok ? 'accepts' : 'rejects'}`;
  if (!decoded.ok) return undefined;
  if (decoded.consumed !== framed.consumed) return `framed reading consumed ${framed.consumed} bytes, decoded ${decoded.consumed}`;
  if (!framed.chunked) return framed.body?.equals(decoded.body as Buffer) ? undefined : 'framed reading changed a body that is not chunked';
  const again = parseOnce({ method: 'GET', bytes: Buffer.concat([CHUNKED_HEAD, framed.body as Buffer]) }, [], false);
  if (!again.ok || again.consumed !== CHUNKED_HEAD.length + (framed.body as Buffer).length)
    return `the framing passed on does not read back as one chunked body (${again.error ?? 'bytes left over'})`;
  return again.body?.equals(decoded.body as Buffer) ? undefined : 'the framing passed on decodes to another body';
}

/** One reading of the case, by a new parser or (`warm`) by the one that read the cases before. */
function parseOnce(c: FuzzCase, splits: readonly number[], framing: boolean, warm = false): ParseResult & { chunked?: boolean } {
  const informational: number[] = [];
  let head: ResponseHead | undefined;
  const body: Buffer[] = [];
  let complete = false;
  let consumed = 0;
  const events: ResponseParserEvents = {
    onInformational: (status) => informational.push(status),
    onResponseHead: (h) => {
      head = h;
      return framing;
    },
    onResponseBody: (chunk) => body.push(Buffer.from(chunk)),
    onResponseComplete: () => {
      complete = true;
    },
  };
  if (warm) warmTarget = events;
  const parser = warm ? warmParser : new ResponseParser(events);
  parser.reset(c.method === 'HEAD');
  try {
    let at = 0;
    for (let k = 0; at < c.bytes.length && !complete; k++) {
      const n = splits[k] ?? c.bytes.length - at;
      consumed = at + parser.execute(c.bytes.subarray(at, at + n));
      at += n;
    }
    if (!complete) {
      parser.finish();
      consumed = c.bytes.length;
    }
  } catch (err) {
    return { ok: false, error: (err as Error).message, informational };
  }
  return {
    ok: true,
    informational,
    status: head?.status,
    headers: head?.headers,
    reason: head?.reason,
    endToEndLines: head?.endToEndLines,
    withStatusLine: head?.withStatusLine,
    body: Buffer.concat(body),
    consumed,
    chunked: head?.length === -1,
  };
}

/** A raw server that answers each request with the bytes of the case its path names, then closes. */
export class RawResponder {
  private readonly server: Server;
  private readonly cases = new Map<number, Buffer>();
  private next = 0;
  port = 0;

  constructor() {
    this.server = createServer((socket) => {
      let seen = '';
      socket.on('error', () => socket.destroy());
      socket.on('data', (chunk) => {
        seen += chunk.toString('latin1');
        if (!seen.includes('\r\n\r\n')) return;
        const id = Number(/^\w+ \/(\d+) /.exec(seen)?.[1]);
        socket.removeAllListeners('data');
        socket.end(this.cases.get(id) ?? Buffer.alloc(0));
      });
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** llhttp's verdict: node:http's client on the same bytes. */
  parseWithNode(c: FuzzCase): Promise<ParseResult> {
    const id = this.next++;
    this.cases.set(id, c.bytes);
    return new Promise<ParseResult>((resolve) => {
      const informational: number[] = [];
      let done = false;
      const finish = (result: ParseResult) => {
        if (done) return;
        done = true;
        this.cases.delete(id);
        req.destroy();
        resolve(result);
      };
      const req = request({ host: '127.0.0.1', port: this.port, method: c.method, path: `/${id}`, agent: false, maxHeaderSize: 64 * 1024 });
      req.on('information', (info) => informational.push(info.statusCode));
      req.on('error', (err) => finish({ ok: false, error: `${(err as { code?: string }).code ?? ''} ${err.message}`, informational }));
      req.on('response', (res) => {
        const body: Buffer[] = [];
        res.on('data', (chunk: Buffer) => body.push(chunk));
        res.on('error', (err) => finish({ ok: false, error: err.message, informational }));
        res.on('end', () => {
          if (!res.complete) return finish({ ok: false, error: 'incomplete', informational });
          finish({ ok: true, informational, status: res.statusCode, version: res.httpVersion, reason: res.statusMessage, headers: res.rawHeaders, body: Buffer.concat(body) });
        });
        res.on('close', () => finish({ ok: false, error: 'closed before the end', informational }));
      });
      req.end();
    });
  }
}

export interface Disagreement {
  seed: number;
  index: number;
  bytes: string;
  method: string;
  ours: ParseResult;
  node: ParseResult;
  problem: string;
}

export interface FuzzSummary {
  cases: number;
  bothAccept: number;
  bothReject: number;
  onlyNodeAccepts: number;
  disagreements: Disagreement[];
}

/**
 * llhttp's list as ours is meant to be: without `Connection: keep-alive`/`close` and `Keep-Alive`,
 * which only this hop reads (see ResponseHead.headers).
 */
function withoutThisHopFields(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = (raw[i + 1] as string).toLowerCase();
    if (name === 'keep-alive' || (name === 'connection' && (value === 'keep-alive' || value === 'close'))) continue;
    out.push(raw[i] as string, raw[i + 1] as string);
  }
  return out;
}

/**
 * llhttp's fields without the hop-by-hop ones as `Name: value` lines, what ResponseHead.endToEndLines
 * must be when set; undefined when a Connection field names further fields (then it must not be set).
 */
function endToEndLinesOf(raw: readonly string[]): string | undefined {
  let lines = '';
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = (raw[i + 1] as string).toLowerCase();
    if (name === 'connection' && value !== '' && value !== 'keep-alive' && value !== 'close') return undefined;
    if (!HOP_BY_HOP.has(name)) lines += `${raw[i]}: ${raw[i + 1]}\r\n`;
  }
  return lines;
}

/** Compares one case; a string says what is wrong, undefined that it is fine. */
export function compare(ours: ParseResult, node: ParseResult): string | undefined {
  if (ours.framingProblem) return ours.framingProblem;
  if (ours.ok && !node.ok) return `we accept what llhttp rejects (${node.error})`;
  if (!ours.ok || !node.ok) return undefined;
  if (ours.status !== node.status) return `status ${ours.status} vs ${node.status}`;
  const expected = withoutThisHopFields(node.headers ?? []);
  if (JSON.stringify(ours.headers) !== JSON.stringify(expected)) return `headers ${JSON.stringify(ours.headers)} vs ${JSON.stringify(expected)}`;
  if (ours.endToEndLines !== undefined) {
    // With the status line: the one a client response head with llhttp's status and reason begins with, for an HTTP/1.1 answer with a reason.
    const statusLine = ours.withStatusLine && node.version === '1.1' && node.reason ? `HTTP/1.1 ${node.status} ${node.reason}\r\n` : '';
    const expected = endToEndLinesOf(node.headers ?? []);
    if ((ours.withStatusLine && statusLine === '') || ours.endToEndLines !== statusLine + expected) {
      return `end-to-end lines ${JSON.stringify(ours.endToEndLines)} vs ${JSON.stringify(statusLine + expected)}`;
    }
  }
  if (JSON.stringify(ours.informational) !== JSON.stringify(node.informational)) return `1xx ${ours.informational} vs ${node.informational}`;
  if (!ours.body?.equals(node.body as Buffer)) return `body of ${ours.body?.length} bytes vs ${node.body?.length}`;
  return undefined;
}

/** Runs `count` cases from `seed`, `parallel` at a time. */
export async function fuzzResponses(seed: number, count: number, parallel = 8): Promise<FuzzSummary> {
  const responder = new RawResponder();
  await responder.start();
  const summary: FuzzSummary = { cases: 0, bothAccept: 0, bothReject: 0, onlyNodeAccepts: 0, disagreements: [] };
  try {
    const r = prng(seed);
    let index = 0;
    const worker = async () => {
      while (index < count) {
        const i = index++;
        const c = randomCase(r);
        const ours = parseOurs(c, prng(seed ^ i));
        // Bytes past the response's framing make the connection unusable (it is closed, never reused);
        // the response itself is judged alone, as llhttp would read it before the extra bytes.
        const alone = ours.ok && (ours.consumed as number) < c.bytes.length ? { method: c.method, bytes: c.bytes.subarray(0, ours.consumed) } : c;
        const node = await responder.parseWithNode(alone);
        summary.cases++;
        if (ours.ok && node.ok) summary.bothAccept++;
        else if (!ours.ok && !node.ok) summary.bothReject++;
        else if (node.ok) summary.onlyNodeAccepts++;
        const problem = compare(ours, node);
        if (problem) summary.disagreements.push({ seed, index: i, bytes: JSON.stringify(c.bytes.toString('latin1')), method: c.method, ours, node, problem });
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
  } finally {
    await responder.close();
  }
  return summary;
}
