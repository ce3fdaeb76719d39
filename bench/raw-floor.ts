/**
 * A reference, not a proxy anyone should run: about the least a Node proxy on raw `net` sockets can
 * do for a small keep-alive GET — find the head's end with indexOf, pick an upstream round robin, send
 * a fixed head on a pooled upstream socket, read a Content-Length response and write it back in one
 * write. No validation, no bodies from the client, no chunked responses, no errors handled beyond
 * staying up. It shows what one Node event loop costs per proxied request before any feature: set it
 * beside nginx with wrk and compare CPU per request (docs/performance.md, "What holds the CPU back").
 *
 * Two ways to do the sockets' I/O, the same proxying either way:
 * - plain (the default): net's 'data' events and socket.write() — what any Node proxy does;
 * - `--direct`: Velocity's own socket I/O, from this checkout's dist/ (build first): accepted client
 *   sockets rebuilt to read into a shared buffer (adoptReads, src/proxy/http1/socket-io.ts), upstream
 *   sockets connected with net's `onread` option into a buffer of their own, reads with bytes taken
 *   straight from both handles past net's onStreamRead (readDirectly, src/socket-reader.ts), and every
 *   write straight to the handle (SocketWriter, src/socket-writer.ts), held to the end of the event-loop
 *   turn as Velocity holds them (writeAtTurnEnd; `--at-once` writes each as it comes). That is the floor of
 *   Velocity's design: what is between it and Velocity is Velocity's own work per request.
 *
 *   node bench/raw-floor.ts [--direct [--at-once]] PORT http://UPSTREAM …      then: wrk -t1 -c50 -d3 http://127.0.0.1:PORT/
 */
import { Buffer } from 'node:buffer';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const argv = process.argv.slice(2);
const direct = argv.includes('--direct');
const atOnce = argv.includes('--at-once');
const [port, ...upstreams] = argv.filter((a) => a !== '--direct' && a !== '--at-once');
const targets = upstreams.map((u) => new URL(u));
let next = 0;
const HEAD_END = '\r\n\r\n';
/** A read's size, as net's default and Velocity's. */
const READ_SIZE = 64 * 1024;

/** Idle connections to each target, and how a new one is opened (it calls back when it can send). */
class Pool<C> {
  private readonly idle = targets.map((): C[] => []);
  private readonly open: (target: URL, index: number, ready: (connection: C) => void) => void;

  constructor(open: (target: URL, index: number, ready: (connection: C) => void) => void) {
    this.open = open;
  }

  take(index: number, use: (connection: C) => void): void {
    const pooled = this.idle[index]?.pop();
    if (pooled) use(pooled);
    else this.open(targets[index] as URL, index, use);
  }

  give(index: number, connection: C): void {
    this.idle[index]?.push(connection);
  }
}

/** Where the head in `bytes` (the first `length` of them) ends; -1 when it has not all come. */
function headEnd(bytes: Buffer, length: number): number {
  const end = bytes.indexOf(HEAD_END);
  return end >= 0 && end + 4 <= length ? end : -1;
}

/** The request target of a request head's first line. */
function pathOf(head: string): string {
  const start = head.indexOf(' ') + 1;
  return head.slice(start, head.indexOf(' ', start));
}

const upstreamHead = (path: string, index: number): string => `GET ${path} HTTP/1.1\r\nhost: ${(targets[index] as URL).host}\r\nx-forwarded-for: 127.0.0.1\r\n\r\n`;

/** The client's response to a whole Content-Length response in the first `length` bytes of `response`; undefined while it is not whole. */
function clientResponse(response: Buffer, length: number): string | undefined {
  const end = headEnd(response, length);
  if (end < 0) return undefined;
  const bodyLength = Number(/content-length: *(\d+)/i.exec(response.toString('latin1', 0, end))?.[1] ?? 0);
  if (length < end + 4 + bodyLength) return undefined;
  return `HTTP/1.1 200 OK\r\ncontent-length: ${bodyLength}\r\ncontent-type: text/plain\r\n\r\n${response.toString('latin1', end + 4, end + 4 + bodyLength)}`;
}

/** The first `length` bytes of `bytes` after what an earlier read left (`partial`), as one Buffer that outlives the read. */
const joined = (partial: Buffer, bytes: Buffer, length: number): Buffer => Buffer.concat([partial, bytes.subarray(0, length)]);

function plainFloor(): void {
  const pool = new Pool<Socket>((target, _index, ready) => {
    const socket = connect({ host: target.hostname, port: Number(target.port), noDelay: true });
    socket.on('error', () => socket.destroy());
    socket.once('connect', () => ready(socket));
  });
  createServer((client) => {
    client.setNoDelay(true);
    client.on('error', () => client.destroy());
    let pending: Buffer | undefined;
    client.on('data', (chunk: Buffer) => {
      pending = pending ? Buffer.concat([pending, chunk]) : chunk;
      const end = headEnd(pending, pending.length);
      if (end < 0) return;
      const path = pathOf(pending.toString('latin1', 0, end));
      pending = end + 4 < pending.length ? pending.subarray(end + 4) : undefined;
      const index = next++ % targets.length;
      pool.take(index, (upstream) => {
        let response: Buffer | undefined;
        const onData = (data: Buffer): void => {
          response = response ? Buffer.concat([response, data]) : data;
          const answer = clientResponse(response, response.length);
          if (answer === undefined) return;
          upstream.removeListener('data', onData);
          client.write(answer, 'latin1');
          pool.give(index, upstream);
        };
        upstream.on('data', onData);
        upstream.write(upstreamHead(path, index), 'latin1');
      });
    });
  }).listen(Number(port), '127.0.0.1');
}

async function directFloor(): Promise<void> {
  const dist = (file: string) => import(pathToFileURL(join(import.meta.dirname, '..', 'dist', file)).href);
  const [{ adoptReads }, { readDirectly }, { SocketWriter }, { streamWrap }] = (await Promise.all([
    dist('proxy/http1/socket-io.js'),
    dist('socket-reader.js'),
    dist('socket-writer.js'),
    dist('stream-wrap.js'),
  ])) as [
    typeof import('../src/proxy/http1/socket-io.ts'),
    typeof import('../src/socket-reader.ts'),
    typeof import('../src/socket-writer.ts'),
    typeof import('../src/stream-wrap.ts'),
  ];
  type Writer = InstanceType<typeof SocketWriter>;
  const send = atOnce ? (writer: Writer, data: string) => writer.write(data) : (writer: Writer, data: string) => writer.writeAtTurnEnd(data);
  // Without the binding every socket would quietly take net's path: that is the plain floor, not this one.
  if (streamWrap === undefined) throw new Error("process.binding('stream_wrap') is not usable: no direct socket I/O in this Node");

  /** A pooled upstream connection: reads into its own buffer, straight from the handle once connected. */
  class Upstream {
    readonly index: number;
    private readonly socket: Socket;
    private readonly writer: Writer;
    private readonly buffer = Buffer.allocUnsafeSlow(READ_SIZE);
    /** A response's first part, copied out of the read buffer, while the rest has not come. */
    private partial: Buffer | undefined;
    /** The client waiting for this connection's response. */
    private client: Writer | undefined;

    constructor(target: URL, index: number, ready: (upstream: Upstream) => void) {
      this.index = index;
      this.socket = connect({ host: target.hostname, port: Number(target.port), noDelay: true, onread: { buffer: this.buffer, callback: this.onRead } });
      this.writer = new SocketWriter(this.socket, true);
      this.socket.on('error', () => this.socket.destroy());
      this.socket.once('connect', () => {
        if (readDirectly(this.socket, this.onBytes) === undefined) throw new Error('an upstream socket cannot be read directly');
        ready(this);
      });
    }

    send(path: string, client: Writer): void {
      this.client = client;
      send(this.writer, upstreamHead(path, this.index));
    }

    /** Reads that come through net (none once connected, unless a timeout were set): the same. */
    private readonly onRead = (length: number): boolean => {
      this.onBytes(length);
      return true;
    };

    private readonly onBytes = (length: number): undefined => {
      const bytes = this.partial ? joined(this.partial, this.buffer, length) : this.buffer;
      const size = this.partial ? bytes.length : length;
      const answer = clientResponse(bytes, size);
      this.partial = answer === undefined ? Buffer.from(bytes.subarray(0, size)) : undefined;
      if (answer === undefined) return;
      const client = this.client as Writer;
      this.client = undefined;
      send(client, answer);
      pool.give(this.index, this);
    };
  }

  const pool = new Pool<Upstream>((target, index, ready) => new Upstream(target, index, ready));
  createServer({ noDelay: true }, (accepted) => {
    let partial: Buffer | undefined;
    // Valid only during the call: `shared` is the buffer every adopted socket reads into.
    const onRead = (shared: Buffer, length: number): void => {
      const bytes = partial ? joined(partial, shared, length) : shared;
      const size = partial ? bytes.length : length;
      const end = headEnd(bytes, size);
      partial = end < 0 ? Buffer.from(bytes.subarray(0, size)) : end + 4 < size ? Buffer.from(bytes.subarray(end + 4, size)) : undefined;
      if (end < 0) return;
      const path = pathOf(bytes.toString('latin1', 0, end));
      const index = next++ % targets.length;
      pool.take(index, (upstream) => upstream.send(path, writer));
    };
    const client = adoptReads(accepted, onRead);
    if (client === undefined) throw new Error('an accepted socket cannot be adopted for direct reads');
    const writer = new SocketWriter(client, true);
    client.on('error', () => client.destroy());
  }).listen(Number(port), '127.0.0.1');
}

if (direct) await directFloor();
else plainFloor();
