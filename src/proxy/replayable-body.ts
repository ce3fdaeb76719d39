/**
 * A request body that flows to one attempt at a time with backpressure, and keeps
 * what it passed on (up to a limit) so that a later attempt can be sent the same
 * bytes: how a call the server never processed (GOAWAY, REFUSED_STREAM) or a
 * retried gRPC call gets its messages again. Past the limit it stops keeping and
 * is no longer replayable; the current attempt is unaffected.
 */
import type { Buffer } from 'node:buffer';
import type { RequestBody } from './proxy-message.ts';

export interface BodySink {
  write(chunk: Buffer): boolean;
  end(): void;
  once(event: 'drain', listener: () => void): unknown;
  removeListener(event: 'drain', listener: () => void): unknown;
}

export class ReplayableBody {
  private readonly kept: Buffer[] = [];
  private keptBytes = 0;
  private keeping = true;
  private ended = false;
  private failed = false;
  private sink: BodySink | undefined;
  private readonly source: RequestBody;
  private readonly limit: number;
  private readonly resume = () => this.source.resume();

  constructor(source: RequestBody, limit: number) {
    this.source = source;
    this.limit = limit;
    source.pause();
    source.on('data', (chunk: Buffer) => this.onData(chunk));
    source.once('end', () => {
      this.ended = true;
      this.sink?.end();
    });
    source.once('error', () => {
      this.failed = true;
    });
  }

  /** Whether every byte passed on so far is kept (and the client did not fail mid-body). */
  get replayable(): boolean {
    return this.keeping && !this.failed;
  }

  /** Whether the whole body has arrived. */
  get complete(): boolean {
    return this.ended;
  }

  private onData(chunk: Buffer): void {
    if (this.keeping) {
      this.keptBytes += chunk.length;
      if (this.keptBytes > this.limit) {
        this.keeping = false;
        this.kept.length = 0;
      } else this.kept.push(chunk);
    }
    const sink = this.sink;
    if (sink && !sink.write(chunk)) {
      this.source.pause();
      sink.once('drain', this.resume);
    }
  }

  /** Sends the body to a new attempt: the kept bytes first, then the rest as it arrives. */
  attach(sink: BodySink): void {
    this.detach();
    this.sink = sink;
    for (const chunk of this.kept) sink.write(chunk);
    if (this.ended) {
      sink.end();
      return;
    }
    this.source.resume();
  }

  /** The attempt ended: stop passing bytes on (the client is paused until the next attempt). */
  detach(): void {
    if (this.sink) this.sink.removeListener('drain', this.resume);
    this.sink = undefined;
    if (!this.ended) this.source.pause();
  }
}
