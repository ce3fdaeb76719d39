/**
 * Raw-socket tools for framing tests: a TCP backend that records the exact
 * bytes it receives and frames them with a strict HTTP/1.1 parser of its own,
 * and a client that writes arbitrary bytes and reads whatever comes back.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { TestContext } from 'node:test';

/** One request as the raw backend framed it. */
export interface SeenRequest {
  requestLine: string;
  headers: [string, string][];
  body: Buffer;
  /** Why this request is ambiguous (a proxy and a server could frame it differently), if it is. */
  ambiguity: string | undefined;
}

export interface RawBackend {
  port: number;
  url: string;
  /** Every request framed so far, across connections, in arrival order. */
  readonly requests: SeenRequest[];
  /** Bytes that could not be framed as a request (a parse failure). */
  readonly garbage: string[];
  /** Requests cut off by a closed connection (a proxy aborting a streamed body): never framed, never answered. */
  readonly truncated: string[];
  /** Connections accepted so far. */
  readonly connections: () => number;
  /** Sets the exact bytes answered to each request (default: a valid 200 "ok"). */
  respondWith(bytes: string | ((req: SeenRequest) => string)): void;
  reset(): void;
}

export const OK_RESPONSE = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-raw-backend: 1\r\n\r\nok';

/** A net.Server speaking just enough HTTP/1.1 to frame requests strictly and answer with fixed bytes. */
export async function startRawBackend(t: Pick<TestContext, 'after'>): Promise<RawBackend> {
  const requests: SeenRequest[] = [];
  const garbage: string[] = [];
  const truncated: string[] = [];
  let answer: string | ((req: SeenRequest) => string) = OK_RESPONSE;
  let accepted = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    accepted++;
    sockets.add(socket);
    let buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const framed = frameRequest(buffer);
        if (framed === 'incomplete') break;
        if (framed instanceof Error) {
          garbage.push(`${framed.message}: ${JSON.stringify(buffer.toString('latin1').slice(0, 200))}`);
          socket.destroy();
          return;
        }
        buffer = buffer.subarray(framed.consumed);
        requests.push(framed.request);
        socket.write(typeof answer === 'function' ? answer(framed.request) : answer);
      }
    });
    socket.on('close', () => {
      sockets.delete(socket);
      if (buffer.length > 0) truncated.push(`cut off at close: ${JSON.stringify(buffer.toString('latin1').slice(0, 200))}`);
    });
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    garbage,
    truncated,
    connections: () => accepted,
    respondWith(bytes) {
      answer = bytes;
    },
    reset() {
      requests.length = 0;
      garbage.length = 0;
      truncated.length = 0;
    },
  };
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FRAMING_NAMES = new Set(['content-length', 'transfer-encoding', 'host', 'connection']);

/** Strict RFC 9112 framing of one request at the start of `data`. */
export function frameRequest(data: Buffer): { request: SeenRequest; consumed: number } | 'incomplete' | Error {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) return data.length > 1 << 20 ? new Error('head too large') : 'incomplete';
  const head = data.subarray(0, end).toString('latin1');
  const lines = head.split('\r\n');
  const requestLine = lines.shift() as string;
  const ambiguities: string[] = [];
  if (!/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(requestLine)) ambiguities.push(`odd request line ${JSON.stringify(requestLine)}`);
  const headers: [string, string][] = [];
  for (const line of lines) {
    if (/^[ \t]/.test(line)) ambiguities.push('obs-fold');
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    if (colon <= 0 || !TOKEN.test(name)) ambiguities.push(`bad header name ${JSON.stringify(name)}`);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what this looks for
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value) || line.includes('\n') || line.includes('\r')) ambiguities.push(`control character in ${name}`);
    headers.push([name.toLowerCase(), value]);
  }
  // A server that folds `_` (or `.`) into `-`, as CGI-style environments do, reads these as the framing header itself.
  for (const [name] of headers) {
    const folded = name.replace(/[_.]/g, '-');
    if (folded !== name && FRAMING_NAMES.has(folded)) ambiguities.push(`look-alike of ${folded}: ${JSON.stringify(name)}`);
  }
  const named = (n: string) => headers.filter(([h]) => h === n).map(([, v]) => v);
  const cl = named('content-length');
  const te = named('transfer-encoding');
  if (cl.length > 0 && te.length > 0) ambiguities.push('both Content-Length and Transfer-Encoding');
  if (cl.length > 1) ambiguities.push('more than one Content-Length');
  if (cl.some((v) => !/^\d+$/.test(v))) ambiguities.push(`Content-Length ${JSON.stringify(cl.join(','))}`);
  if (te.length > 0 && te.join(',').trim().toLowerCase() !== 'chunked') ambiguities.push(`Transfer-Encoding ${JSON.stringify(te.join(','))}`);
  if (named('host').length !== 1) ambiguities.push(`${named('host').length} Host headers`);
  let at = end + 4;
  let body: Buffer;
  if (te.length > 0) {
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = data.indexOf('\r\n', at);
      if (lineEnd < 0) return 'incomplete';
      const sizeLine = data.subarray(at, lineEnd).toString('latin1');
      if (!/^[0-9a-fA-F]+(;[^\r\n]*)?$/.test(sizeLine)) return new Error(`bad chunk size line ${JSON.stringify(sizeLine.slice(0, 60))}`);
      const size = Number.parseInt(sizeLine, 16);
      at = lineEnd + 2;
      if (size === 0) {
        const trailerEnd = data.indexOf('\r\n', at);
        if (trailerEnd < 0) return 'incomplete';
        if (trailerEnd !== at) return new Error('trailers are not expected');
        at = trailerEnd + 2;
        break;
      }
      if (data.length < at + size + 2) return 'incomplete';
      parts.push(data.subarray(at, at + size));
      if (data.subarray(at + size, at + size + 2).toString() !== '\r\n') return new Error('chunk not followed by CRLF');
      at += size + 2;
    }
    body = Buffer.concat(parts);
  } else {
    const length = cl.length > 0 ? Number(cl[0]) : 0;
    if (Number.isNaN(length)) return new Error('Content-Length is not a number');
    if (data.length < at + length) return 'incomplete';
    body = data.subarray(at, at + length);
    at += length;
  }
  return { request: { requestLine, headers, body: Buffer.from(body), ambiguity: ambiguities.length > 0 ? ambiguities.join('; ') : undefined }, consumed: at };
}

export interface RawExchange {
  /** Everything the server sent back before it closed or went quiet. */
  text: string;
  /** Status codes of every response in `text`, in order. */
  statuses: number[];
  /** Whether the server closed the connection. */
  closed: boolean;
}

/**
 * Writes `chunks` to host:port (each after `gapMs`), then reads until the server
 * closes or stays quiet for `quietMs`.
 */
export function rawExchange(port: number, chunks: (string | Buffer)[], options: { quietMs?: number; gapMs?: number; maxMs?: number } = {}): Promise<RawExchange> {
  // Generous: on a loaded machine an answer can take well over half a second; a server that closes ends the wait at once.
  const quietMs = options.quietMs ?? 2_000;
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let closed = false;
    let quiet: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(quiet);
      clearTimeout(cap);
      socket.destroy();
      const text = Buffer.concat(received).toString('latin1');
      resolve({ text, statuses: [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])), closed });
    };
    const cap = setTimeout(done, options.maxMs ?? 15_000);
    const arm = () => {
      clearTimeout(quiet);
      quiet = setTimeout(done, quietMs);
    };
    socket.on('data', (b: Buffer) => {
      received.push(b);
      arm();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed = true;
      done();
    });
    socket.on('connect', async () => {
      for (const c of chunks) {
        if (socket.destroyed) break;
        socket.write(c);
        if (options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs));
      }
      arm();
    });
  });
}
