/**
 * Response compression (nginx gzip, Traefik Compress, Caddy encode): zstd, br or
 * gzip from node:zlib, chosen by the client's Accept-Encoding q-values and the
 * configured preference. Streams through a decorator of ClientResponse that keeps
 * backpressure both ways, so it works on any listener. Never on a response that is
 * already encoded, `Cache-Control: no-transform`, a range (206 or Content-Range),
 * a HEAD, a 204/304, a body under `min_size` or a type not in `types`.
 * `Vary: Accept-Encoding` is added whenever the answer could have differed.
 */
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import type { Transform } from 'node:stream';
import { z } from 'zod';
import { size } from '../config-fields.ts';
import type { ClientResponse } from '../proxy/client-response.ts';
import { ENCODINGS, Encoders, type Encoding, LEVELS, reusable, WHOLE_MAX } from './encoders.ts';
import { addToken, headerValue, removeHeader, setHeader } from './head.ts';
import type { Middleware, RequestView } from './middleware.ts';
import { ResponseDecorator } from './response-decorator.ts';

export const compressOptions = z.strictObject({
  /** Offered encodings, preferred first when the client rates them equally. */
  encodings: z
    .array(z.enum(ENCODINGS, { error: 'expected zstd, br or gzip' }))
    .min(1)
    .default(['zstd', 'br', 'gzip']),
  /** Bodies with a Content-Length below this are sent as they are. */
  min_size: size().default(1024),
  /** Content types compressed (a trailing * matches a family, e.g. text/*). */
  types: z
    .array(z.string().regex(/^[a-z0-9.+-]+\/([a-z0-9.+-]+|\*)$/i, 'a media type such as text/html or text/*'))
    .default(['text/*', 'application/json', 'application/javascript', 'application/xml', 'application/problem+json', 'application/ld+json', 'image/svg+xml']),
  /** Compression level: fast (the default, what nginx's gzip 1 and Caddy choose) or best. */
  level: z.enum(LEVELS).default('fast'),
});

/**
 * The encoding to use for an Accept-Encoding value, or undefined for identity.
 * Highest q wins; ties go to the configured order; q=0 refuses; `*` rates the rest.
 */
export function chooseEncoding(accept: string | undefined, offered: readonly Encoding[]): Encoding | undefined {
  if (!accept) return undefined;
  const q = new Map<string, number>();
  for (const part of accept.split(',')) {
    const [rawName, ...params] = part.split(';');
    const name = (rawName as string).trim().toLowerCase();
    if (!name) continue;
    let value = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p);
      if (m) value = Number(m[1]);
    }
    if (Number.isFinite(value)) q.set(name, Math.max(0, Math.min(1, value)));
  }
  let best: Encoding | undefined;
  let bestQ = 0;
  for (const encoding of offered) {
    const value = q.get(encoding) ?? q.get('*') ?? 0;
    if (value > bestQ) {
      best = encoding;
      bestQ = value;
    }
  }
  return best;
}

function typeMatcher(types: readonly string[]): (contentType: string | undefined) => boolean {
  const exact = new Set(types.filter((t) => !t.endsWith('/*')).map((t) => t.toLowerCase()));
  const families = types.filter((t) => t.endsWith('/*')).map((t) => t.slice(0, -1).toLowerCase());
  return (contentType) => {
    if (!contentType) return false;
    const semi = contentType.indexOf(';');
    const type = (semi >= 0 ? contentType.slice(0, semi) : contentType).trim().toLowerCase();
    return exact.has(type) || families.some((f) => type.startsWith(f));
  };
}

export function compress(o: z.output<typeof compressOptions>): Middleware {
  const typeAllowed = typeMatcher(o.types);
  const encoders = new Encoders(o.level);
  return {
    wrap(req: RequestView, res: ClientResponse): ClientResponse {
      if (req.method === 'HEAD') return res;
      return new CompressingResponse(
        res,
        chooseEncoding(req.header('accept-encoding'), o.encodings),
        (status, headers) => {
          if (status < 200 || status === 204 || status === 304 || status === 206) return false;
          if (headerValue(headers, 'content-encoding') !== undefined || headerValue(headers, 'content-range') !== undefined) return false;
          if (/(^|,)\s*no-transform\s*(,|$)/i.test(headerValue(headers, 'cache-control') ?? '')) return false;
          if (!typeAllowed(headerValue(headers, 'content-type'))) return false;
          const length = headerValue(headers, 'content-length');
          return length === undefined || Number(length) >= o.min_size;
        },
        encoders,
      );
    },
  };
}

/**
 * One input buffer of an encoder: four upstream reads (16 KB each, upstream/http1-connection.ts), one
 * zlib write. Each write is a round trip to the thread pool (~40 µs of CPU here, context switches on both
 * sides): a 1 MB body gzipped in 16 KB writes cost 3.6–4.7 ms of CPU, in 64 KB writes 1.7–2.2 ms.
 */
const INPUT_SIZE = 64 * 1024;
/**
 * Input buffers of finished encoders, reused by the next ones (per thread; at most this many kept, 2 MB).
 * Up to three per response are out at once (zlib's, the collecting one, one more when a chunk spans them):
 * with fewer spares than that at c=10, buffers dropped at each ebb were made again at the next flow, and
 * the churn cost 6–10 MB of peak RSS (16 spares: VmHWM 104–108 MB against 97–99).
 */
const SPARE_INPUTS = 32;
const spareInputs: Buffer[] = [];
const takeInput = (): Buffer => spareInputs.pop() ?? Buffer.allocUnsafeSlow(INPUT_SIZE);
function giveBackInput(input: Buffer): void {
  if (input.length === INPUT_SIZE && spareInputs.length < SPARE_INPUTS) spareInputs.push(input);
}

/** A response head held until its whole (small) body is compressed; `length`: its Content-Length. */
interface WholeHead {
  status: number;
  message: string | undefined;
  headers: string[];
  length: number;
}

/**
 * A ClientResponse that compresses what is written to it into the one it wraps.
 *
 * Each chunk is copied into an input buffer of the encoder's, so the caller may reuse its own at once
 * (writableLength 0: the upstream connection reads its next bytes into the same buffer). Without the
 * copy every 16 KB read of a compressed body held a buffer of its own until the encoder, on the thread
 * pool, was done with it, and those buffers were freed only by the next scavenge: ~1 MB of malloc
 * churn per 1 MB response, which left glibc's heap fragmented (a 1 MB-body bench at c=10 peaked at
 * 145 MB, 41 MB of it free chunks). Two input buffers take turns: zlib reads one while the other
 * collects what arrives meanwhile (small chunks coalesce into one zlib call). write() returns false
 * once the collecting one is full, and the encoder's callback waits while its output is not read,
 * which is paused while the client is slow: memory stays bounded by those buffers.
 */
class CompressingResponse extends ResponseDecorator {
  private encoder: Transform | undefined;
  /** 'drain' for the writer of this response, once the collecting buffer has room again. */
  private readonly drains = new EventEmitter<{ drain: [] }>();
  private readonly encoding: Encoding | undefined;
  private readonly eligible: (status: number, headers: string[]) => boolean;
  private readonly encoders: Encoders;
  /** The buffer the encoder is reading, until its write callback. */
  private reading: Buffer | undefined;
  /** The buffers collecting what is written meanwhile: all full but the last, which holds lastLength bytes. */
  private readonly collecting: Buffer[] = [];
  private lastLength = 0;
  /** Bytes in `collecting`. */
  private collected = 0;
  private wantsDrain = false;
  /** end() came while the encoder was reading: it ends once the collected bytes went in too. */
  private ending = false;
  /** A reusable encoder's final flush called back: the response is complete once its output is all out. */
  private flushed = false;
  /**
   * A small body with a known length: collected whole and compressed at end(), on this thread
   * (Encoders.compressWhole); the head waits for it, to go out with the compressed length in the same write.
   */
  private wholeHead: WholeHead | undefined = undefined;
  /** The whole body compressed as soon as it came in one write (or the error doing it): sent at end(). */
  private wholeOut: Buffer | Error | undefined = undefined;
  constructor(inner: ClientResponse, encoding: Encoding | undefined, eligible: (status: number, headers: string[]) => boolean, encoders: Encoders) {
    super(inner);
    this.encoding = encoding;
    this.eligible = eligible;
    this.encoders = encoders;
  }

  override get writableLength(): number | undefined {
    // Chunks are copied (collect): none written is referenced after write() returns.
    return this.encoder || this.wholeHead ? 0 : this.inner.writableLength;
  }

  override writeHead(status: number, message: string | undefined, headers: string[]): unknown {
    const list = [...headers];
    const eligible = this.eligible(status, list);
    // The answer depends on Accept-Encoding whenever this type could be compressed.
    if (eligible || (status === 304 && this.encoding)) addToken(list, 'vary', 'Accept-Encoding');
    if (eligible && this.encoding) {
      const length = headerValue(list, 'content-length');
      removeHeader(list, 'content-length');
      list.push('content-encoding', this.encoding);
      // The bytes differ from the identity representation: a strong validator becomes weak (as nginx does).
      const etag = headerValue(list, 'etag');
      if (etag?.startsWith('"')) setHeader(list, 'etag', `W/${etag}`);
      if (length !== undefined && Number(length) <= WHOLE_MAX && this.encoders.wholeOnThread) {
        this.wholeHead = { status, message, headers: list, length: Number(length) };
        return this;
      }
      this.start(this.encoding);
    }
    return this.inner.writeHead(status, message, list);
  }

  private start(encoding: Encoding): void {
    const encoder = this.encoders.take(encoding);
    this.encoder = encoder;
    encoder.on('data', this.onData);
    encoder.once('error', this.onError);
    // A reused encoder never ends: its response completes in `flushedLast`/`onData` instead.
    if (!reusable(encoding)) encoder.once('end', () => this.inner.end());
    this.inner.once('close', this.onClose);
  }

  private readonly onData = (chunk: Buffer): void => {
    const encoder = this.encoder as Transform;
    if (!this.inner.write(chunk)) {
      encoder.pause();
      this.inner.once('drain', this.resumeEncoder);
    }
    if (this.flushed && encoder.readableLength === 0) this.complete();
  };
  private readonly resumeEncoder = (): void => {
    this.encoder?.resume();
  };
  private readonly onError = (error: Error): void => {
    this.inner.destroy(error);
  };
  /** The client went away (or the response ended): an encoder not given back is dropped, never reused. */
  private readonly onClose = (): void => {
    if (this.encoder && !this.encoder.writableFinished) this.encoder.destroy();
  };

  /** Ends the encoder's input: see Encoders.finish. */
  private finishInput(): void {
    this.encoders.finish(this.encoding as Encoding, this.encoder as Transform, this.flushedLast);
  }

  private readonly flushedLast = (): void => {
    const encoder = this.encoder;
    // Destroyed meanwhile (client gone, encoder error): it is not given back.
    if (encoder === undefined || encoder.destroyed) return;
    this.flushed = true;
    // Output still buffered (the client was slow and paused it): onData completes once it is out.
    if (encoder.readableLength === 0) this.complete();
  };

  /**
   * The whole response went to the client: the encoder goes back for the next response, and is no longer
   * this response's (a late destroy() must not reach it), then the client's response ends.
   */
  private complete(): void {
    const encoder = this.encoder as Transform;
    this.encoder = undefined;
    encoder.removeListener('data', this.onData);
    encoder.removeListener('error', this.onError);
    this.inner.removeListener('close', this.onClose);
    this.inner.removeListener('drain', this.resumeEncoder);
    this.encoders.giveBack(encoder);
    this.inner.end();
  }

  override write(chunk: Uint8Array): boolean {
    if (this.wholeHead) {
      // The whole body in one write (the usual case): compressed from the writer's buffer, not copied.
      if (this.collected === 0 && this.wholeOut === undefined && chunk.length === this.wholeHead.length) this.wholeOut = this.compressWholeNow(chunk);
      // Else at most WHOLE_MAX bytes in all (the Content-Length): they wait for end().
      else this.collect(chunk);
      return true;
    }
    if (!this.encoder) return this.inner.write(chunk);
    if (chunk.length === 0) return true;
    this.collect(chunk);
    if (this.reading === undefined) this.feed();
    if (this.collected < INPUT_SIZE) return true;
    this.wantsDrain = true;
    return false;
  }

  /** Appends a copy of `chunk` to the collecting buffers. */
  private collect(chunk: Uint8Array): void {
    for (let at = 0; at < chunk.length; ) {
      if (this.collecting.length === 0 || this.lastLength === INPUT_SIZE) {
        this.collecting.push(takeInput());
        this.lastLength = 0;
      }
      const length = Math.min(INPUT_SIZE - this.lastLength, chunk.length - at);
      (this.collecting.at(-1) as Buffer).set(length === chunk.length ? chunk : chunk.subarray(at, at + length), this.lastLength);
      this.lastLength += length;
      at += length;
    }
    this.collected += chunk.length;
  }

  /** Hands the first collecting buffer to the encoder: at most one write of ours is in it at a time. */
  private feed(): void {
    const input = this.collecting.shift() as Buffer;
    const length = this.collecting.length === 0 ? this.lastLength : INPUT_SIZE;
    this.collected -= length;
    this.reading = input;
    (this.encoder as Transform).write(input.subarray(0, length), this.fed);
  }

  private readonly fed = (error?: Error | null): void => {
    const input = this.reading as Buffer;
    this.reading = undefined;
    // Destroyed (client gone): nothing more goes in.
    if (error) return;
    giveBackInput(input);
    if (this.collected > 0) this.feed();
    else if (this.ending) this.finishInput();
    if (this.wantsDrain) {
      this.wantsDrain = false;
      this.drains.emit('drain');
    }
  };

  override end(): unknown {
    if (this.wholeHead) {
      this.endWhole(this.wholeHead);
      return this;
    }
    if (!this.encoder) return this.inner.end();
    if (this.reading) this.ending = true;
    else this.finishInput();
    return this;
  }

  /**
   * Compresses the collected body at once (Encoders.compressWhole) and sends the head with its
   * Content-Length and the body: one write, no chunk framing.
   */
  private endWhole(head: WholeHead): void {
    this.wholeHead = undefined;
    let compressed = this.wholeOut;
    this.wholeOut = undefined;
    if (compressed === undefined) {
      const last = this.collecting.length - 1;
      compressed = this.compressWholeNow(
        last === 0
          ? (this.collecting[0] as Buffer).subarray(0, this.lastLength)
          : Buffer.concat(this.collecting.map((input, i) => (i === last ? input.subarray(0, this.lastLength) : input))),
      );
      this.releaseCollected();
    }
    if (compressed instanceof Error) return void this.inner.destroy(compressed);
    head.headers.push('content-length', String(compressed.length));
    this.inner.writeHead(head.status, head.message, head.headers);
    this.inner.write(compressed);
    this.inner.end();
  }

  private compressWholeNow(body: Uint8Array): Buffer | Error {
    try {
      return this.encoders.compressWhole(this.encoding as Encoding, body);
    } catch (error) {
      return error as Error;
    }
  }

  /** Gives back the collecting buffers: nothing reads them any more. */
  private releaseCollected(): void {
    for (const input of this.collecting) giveBackInput(input);
    this.collecting.length = 0;
    this.collected = 0;
  }

  override destroy(error?: Error): unknown {
    if (this.wholeHead) {
      this.wholeHead = undefined;
      this.wholeOut = undefined;
      this.releaseCollected();
    }
    this.encoder?.destroy();
    return this.inner.destroy(error);
  }

  override on(event: 'close' | 'drain', listener: () => void): unknown {
    // 'drain' is this response's own once the encoder runs (collect); otherwise (and 'close' always) the client's.
    if (event === 'close' || !this.encoder) return this.inner.on(event, listener);
    return this.drains.on(event, listener);
  }
  override once(event: 'close' | 'drain', listener: () => void): unknown {
    // 'drain' is this response's own once the encoder runs (collect); otherwise (and 'close' always) the client's.
    if (event === 'close' || !this.encoder) return this.inner.once(event, listener);
    return this.drains.once(event, listener);
  }
  override removeListener(event: 'close' | 'drain', listener: () => void): unknown {
    // 'drain' is this response's own once the encoder runs (collect); otherwise (and 'close' always) the client's.
    if (event === 'close' || !this.encoder) return this.inner.removeListener(event, listener);
    return this.drains.removeListener(event, listener);
  }
}
