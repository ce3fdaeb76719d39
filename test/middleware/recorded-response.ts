/** The client's side of a response in this process, for tests of response decorators (compression). */
import { EventEmitter } from 'node:events';
import type { RequestView } from '../../src/middleware/middleware.ts';
import type { ClientResponse } from '../../src/proxy/client-response.ts';

/**
 * What reaches the client. By default a socket that takes every write whole (write() returns true);
 * `slow`: a socket whose every write() returns false, with 'drain' on the next turn, as a client that reads
 * slower than the response is written.
 */
export class Recorded implements ClientResponse {
  readonly chunks: Buffer[] = [];
  headersSent = false;
  destroyed = false;
  writableFinished = false;
  writableLength = 0;
  statusCode = 200;
  private readonly slow: boolean;
  private readonly events = new EventEmitter<{ close: []; drain: [] }>();
  private readonly ended: Promise<void>;
  private finish: () => void = () => {};
  constructor(options: { slow?: boolean } = {}) {
    this.slow = options.slow ?? false;
    this.ended = new Promise((resolve) => {
      this.finish = resolve;
    });
  }
  writeHead(statusCode: number): unknown {
    this.statusCode = statusCode;
    this.headersSent = true;
    return this;
  }
  write(chunk: Uint8Array): boolean {
    this.chunks.push(Buffer.from(chunk));
    if (!this.slow) return true;
    setImmediate(() => this.events.emit('drain'));
    return false;
  }
  end(): unknown {
    this.writableFinished = true;
    this.finish();
    return this;
  }
  destroy(): unknown {
    this.destroyed = true;
    return this;
  }
  on(event: 'close' | 'drain', listener: () => void): unknown {
    return this.events.on(event, listener);
  }
  once(event: 'close' | 'drain', listener: () => void): unknown {
    return this.events.once(event, listener);
  }
  removeListener(event: 'close' | 'drain', listener: () => void): unknown {
    return this.events.removeListener(event, listener);
  }
  body(): Promise<Buffer> {
    return this.ended.then(() => Buffer.concat(this.chunks));
  }
}

/** A GET that accepts gzip. */
export const view: RequestView = {
  method: 'GET',
  url: '/',
  clientIp: '127.0.0.1',
  requestId: 'r',
  host: 'h',
  proto: 'http',
  header: (n: string) => (n === 'accept-encoding' ? 'gzip' : undefined),
  cookie: () => undefined,
};
