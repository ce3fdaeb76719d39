/**
 * A client response in memory (the proxy's ClientResponse interface), for driving middleware and
 * middleware runs without a socket: the middleware conformance suite and bench/middleware-cost.ts.
 */
import { EventEmitter } from 'node:events';
import type { ClientResponse } from '../../src/proxy/client-response.ts';

export interface MemoryResponseOptions {
  /** How many first writes answer "slow" (false, then 'drain' on the next turn); 0 takes everything at once. */
  slowWrites?: number;
  /** Keep every chunk in `chunks` (a bench writing gigabytes counts `bytes` only). */
  keepChunks?: boolean;
  /** Emit 'close' on the turn after end(), as a socket does ('finish' always comes at once). */
  closeAfterEnd?: boolean;
}

export class MemoryResponse extends EventEmitter implements ClientResponse {
  headersSent = false;
  destroyed = false;
  writableFinished = false;
  statusCode = 200;
  head: { status: number; headers: string[] } | undefined;
  chunks: Buffer[] = [];
  bytes = 0;
  ends = 0;
  private slowWrites: number;
  private readonly options: MemoryResponseOptions;

  constructor(options: MemoryResponseOptions = {}) {
    super();
    this.options = options;
    this.slowWrites = options.slowWrites ?? 0;
  }

  writeHead(status = 200, _message?: string, headers: string[] = []) {
    this.head = { status, headers };
    this.headersSent = true;
    return this;
  }
  write(chunk: Uint8Array) {
    this.bytes += chunk.length;
    if (this.options.keepChunks) this.chunks.push(Buffer.from(chunk));
    if (this.slowWrites-- > 0) {
      setImmediate(() => this.emit('drain'));
      return false;
    }
    return true;
  }
  end() {
    this.ends++;
    this.writableFinished = true;
    this.emit('finish');
    if (this.options.closeAfterEnd) setImmediate(() => this.emit('close'));
    return this;
  }
  destroy() {
    this.destroyed = true;
    return this;
  }
}
