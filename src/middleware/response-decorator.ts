/**
 * A ClientResponse that passes everything to the one it wraps: the base of the
 * response decorators (head hooks, compression, error pages), which override only
 * what they change.
 */
import type { ClientResponse } from '../proxy/client-response.ts';
import type { ResponseHead } from './middleware.ts';

export class ResponseDecorator implements ClientResponse {
  protected readonly inner: ClientResponse;
  constructor(inner: ClientResponse) {
    this.inner = inner;
  }
  get headersSent(): boolean {
    return this.inner.headersSent;
  }
  get destroyed(): boolean {
    return this.inner.destroyed;
  }
  get writableFinished(): boolean {
    return this.inner.writableFinished;
  }
  /**
   * The inner response's: a decorator that passes each chunk on within write() (or drops it) holds
   * none, so the forwarder may read the next bytes into the same buffer (undefined would make every
   * upstream read allocate a buffer of its own). One that keeps chunks overrides this.
   */
  get writableLength(): number | undefined {
    return this.inner.writableLength;
  }
  get statusCode(): number {
    return this.inner.statusCode;
  }
  set statusCode(v: number) {
    this.inner.statusCode = v;
  }
  get shouldKeepAlive(): boolean | undefined {
    return this.inner.shouldKeepAlive;
  }
  set shouldKeepAlive(v: boolean | undefined) {
    this.inner.shouldKeepAlive = v;
  }
  get req(): ClientResponse['req'] {
    return this.inner.req;
  }
  writeHead(statusCode: number, statusMessage: string | undefined, headers: string[]): unknown {
    return this.inner.writeHead(statusCode, statusMessage, headers);
  }
  write(chunk: Uint8Array): boolean {
    return this.inner.write(chunk);
  }
  end(): unknown {
    return this.inner.end();
  }
  destroy(error?: Error): unknown {
    return this.inner.destroy(error);
  }
  on(event: 'close' | 'drain', listener: () => void): unknown {
    return this.inner.on(event, listener);
  }
  once(event: 'close' | 'drain', listener: () => void): unknown {
    return this.inner.once(event, listener);
  }
  removeListener(event: 'close' | 'drain', listener: () => void): unknown {
    return this.inner.removeListener(event, listener);
  }
}

/** Runs a hook over the response head (status and a copy of the header list) before it is written. */
export class HeadHookResponse extends ResponseDecorator {
  private readonly hook: (head: ResponseHead) => void;
  constructor(inner: ClientResponse, hook: (head: ResponseHead) => void) {
    super(inner);
    this.hook = hook;
  }
  override writeHead(statusCode: number, statusMessage: string | undefined, headers: string[]): unknown {
    const head = { status: statusCode, headers: [...headers] };
    this.hook(head);
    return this.inner.writeHead(head.status, head.status === statusCode ? statusMessage : undefined, head.headers);
  }
}
