/**
 * Line-echo TCP servers for tests (real sockets on 127.0.0.1:0): each line `X`
 * is answered `NAME:X`; the line `who` is answered with the client address the
 * server believes in (from a PROXY header when it expects one); after the
 * client half-closes, the server sends `NAME:bye` and closes its side.
 */
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import { type ParsedProxyHeader, parseProxyHeader } from './proxy-protocol-parser.ts';

export interface EchoServer {
  name: string;
  port: number;
  url: string;
  readonly open: number;
  readonly headers: ParsedProxyHeader[];
  close(): Promise<void>;
}

export async function startEcho(t: Pick<TestContext, 'after'>, name: string, options: { proxyProtocol?: boolean; port?: number } = {}): Promise<EchoServer> {
  const sockets = new Set<Socket>();
  const headers: ParsedProxyHeader[] = [];
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let buffer = Buffer.alloc(0);
    let header: ParsedProxyHeader | undefined;
    let needHeader = options.proxyProtocol === true;
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (needHeader) {
        header = parseProxyHeader(buffer);
        if (!header) return;
        headers.push(header);
        buffer = buffer.subarray(header.length);
        needHeader = false;
      }
      for (let nl = buffer.indexOf(10); nl >= 0; nl = buffer.indexOf(10)) {
        const line = buffer.subarray(0, nl).toString();
        buffer = buffer.subarray(nl + 1);
        const who = header ? `${header.sourceAddress} ${header.sourcePort}` : `${socket.remoteAddress} ${socket.remotePort}`;
        socket.write(`${name}:${line === 'who' ? who : line}\n`);
      }
    });
    socket.on('end', () => socket.end(`${name}:bye\n`));
  });
  await new Promise<void>((r) => server.listen(options.port ?? 0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  let closing: Promise<void> | undefined;
  const echo: EchoServer = {
    name,
    port,
    url: `tcp://127.0.0.1:${port}`,
    get open() {
      return sockets.size;
    },
    headers,
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      });
      return closing;
    },
  };
  t.after(() => echo.close());
  return echo;
}

/** A line-oriented TCP client. */
export class LineClient {
  readonly socket: Socket;
  private buffer = '';
  private waiting: ((line: string) => void)[] = [];
  private lines: string[] = [];
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buffer += d;
      for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        const next = this.waiting.shift();
        if (next) next(line);
        else this.lines.push(line);
      }
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((r) => socket.once('close', () => r()));
  }

  static connect(port: number): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host: '127.0.0.1', port }, () => resolve(new LineClient(socket)));
      socket.once('error', reject);
    });
  }

  /** The next line from the server, or rejects when none comes in time or the socket closes. */
  next(timeoutMs = 5_000): Promise<string> {
    const ready = this.lines.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no line within ${timeoutMs}ms`)), timeoutMs);
      void this.closed.then(() => {
        clearTimeout(timer);
        reject(new Error('connection closed'));
      });
      this.waiting.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  }

  async ask(line: string, timeoutMs?: number): Promise<string> {
    this.socket.write(`${line}\n`);
    return this.next(timeoutMs);
  }
}
