/**
 * One client connection of the HTTP/1.1 server: bytes are parsed into
 * requests, one at a time (pipelined requests wait their turn, and the socket
 * is paused when too many bytes wait), bodies are fed to the request with
 * backpressure, and the connection is reused, closed or handed off (WebSocket)
 * after each response. Deadlines are plain numbers the server's sweep checks:
 * no timer per request.
 */
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { epochMs } from '../../clock.ts';
import { SocketWriter } from '../../socket-writer.ts';
import { ChunkedDecoder, type ChunkSink } from './chunked.ts';
import { checkPartialHead, findHeadEnd, HeadError, parseRequestHead, type RequestHead } from './head-parser.ts';
import { type BodySource, Http1Request } from './request.ts';
import { Http1Response, type ResponseOwner } from './response.ts';
import { adoptReads, owned, releaseReads } from './socket-io.ts';

/** What the server tells each connection: limits, the handlers and whether it is draining. */
export interface ConnectionHost {
  readonly maxHeaderSize: number;
  readonly headerTimeout: number;
  readonly bodyTimeout: number;
  readonly keepAliveTimeout: number;
  /** A FIN after the request and before its answer started cancels the request (client.abort_on_close). */
  readonly abortOnClose: boolean;
  readonly draining: boolean;
  /** Client sockets may be read and written below net's public API (shared-buffer reads, direct writes: socket-io.ts, socket-writer.ts). */
  readonly socketInternals: boolean;
  onRequest(req: Http1Request, res: Http1Response): void;
  /** Whether this upgrade request leaves HTTP (a WebSocket the handler takes). */
  wantsUpgrade(req: Http1Request): boolean;
  onUpgrade(req: Http1Request, res: Http1Response, socket: Socket, head: Buffer): void;
  forget(connection: Http1Connection): void;
}

/**
 * Pipelined bytes kept while a request is served; past this the socket is paused, until the requests served
 * from them bring them back under it (at least one whole head fits).
 */
const PIPELINE_BYTES = 64 * 1024;
/** How long a refused client may keep sending before the socket is destroyed (its answer gets out first). */
const LINGER_MS = 2_000;
/**
 * How long a keep-alive connection must sit idle before shutdown closes it: closing one at once
 * races a client that is sending its next request on it, which then sees a reset.
 */
const IDLE_BEFORE_CLOSE_MS = 1_000;
const EMPTY = Buffer.alloc(0);
/** The end of a chunked body passed through with its framing (its trailers are dropped). */
const CRLF = Buffer.from('\r\n', 'latin1');

/** Phases of a connection. */
const IDLE = 0;
const HEAD = 1;
const BODY = 2;
const SERVING = 3;
const CLOSING = 4;
const GONE = 5;

/**
 * The deadline of a connection idle since its last response until the server's sweep sees it: the keep-alive
 * timeout then runs from the sweep's clock reading (idleFrom), not from one read per response (~50 ns of user
 * CPU). The connection closes up to one sweep later than it would counted from the response, never earlier.
 */
export const IDLE_UNSTAMPED = -1;

/** What happens at the deadline. */
const CUT = 0;
const TIMEOUT_408 = 1;

const STATUS_CODES_BY_ERROR: Record<number, string> = {
  400: 'BAD_REQUEST',
  405: 'BAD_REQUEST',
  408: 'CLIENT_TIMEOUT',
  414: 'URI_TOO_LONG',
  417: 'BAD_REQUEST',
  431: 'HEADERS_TOO_LARGE',
  505: 'BAD_REQUEST',
};
const REASONS: Record<number, string> = {
  400: 'Bad Request',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  414: 'URI Too Long',
  417: 'Expectation Failed',
  431: 'Request Header Fields Too Large',
  505: 'HTTP Version Not Supported',
};

export class Http1Connection implements BodySource, ChunkSink, ResponseOwner {
  readonly socket: Socket;
  readonly writer: SocketWriter;
  private readonly host: ConnectionHost;
  private phase = IDLE;
  /** Epoch ms at which `onDeadline` applies; 0 for none. */
  deadline: number;
  private onDeadline = CUT;
  /** Bytes received and not yet parsed (a partial head, or pipelined requests). */
  private pending: Buffer | undefined;
  /** How far `pending` was searched for a head's end. */
  private scanned = 0;
  /** The response being served (its request is `req`): one store per request into this long-lived object, not two (each a write barrier). */
  private res: Http1Response | undefined;
  private bodyLeft = 0;
  private decoder: ChunkedDecoder | undefined;
  private chunked = false;
  private continueOwed = false;
  private bodyPaused = false;
  /**
   * Body bytes go to the request as they come: a Content-Length body at once, a chunked one from its
   * first read (before it they wait in `pending`: the reader chooses decoded or framed).
   */
  private bodyRead = false;
  private pipelinePaused = false;
  private clientEnded = false;
  /** When the connection last became idle (accepted, or its last response flushed). */
  private idleSince = epochMs();

  constructor(host: ConnectionHost, accepted: Socket) {
    this.host = host;
    const adopted = host.socketInternals ? adoptReads(accepted, this.onRead) : undefined;
    const socket = adopted ?? accepted;
    this.socket = socket;
    // A drain of either kind (the writer's queued direct writes, or the socket's Writable) reaches the response.
    this.writer = new SocketWriter(socket, host.socketInternals, this.onDrain);
    // A connection that never sends a byte is cut at the header timeout, silently.
    this.deadline = epochMs() + host.headerTimeout;
    socket.setNoDelay(true);
    if (adopted === undefined) socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('drain', this.onDrain);
    socket.on('error', onSocketError);
    socket.on('close', this.onClose);
  }

  /** No request in progress and nothing received toward one. */
  get idle(): boolean {
    return this.phase === IDLE && (this.pending === undefined || this.pending.length === 0);
  }

  /** A read on the stream path ('data'). */
  private readonly onData = (chunk: Buffer): void => this.onRead(chunk, chunk.length);

  /**
   * A read: buf[0, length). With shared reads `buf` is valid only during this call: what is kept of it past the
   * call (pipelined bytes, a partial head, body bytes nobody read yet) is copied out at the end. A head read
   * by an idle connection is parsed where it lies, without a view of the read made for it.
   */
  private readonly onRead = (buf: Buffer, length: number): void => {
    if (this.phase === IDLE && (this.pending === undefined || this.pending.length === 0)) this.parseHead(buf, length);
    else this.take(length === buf.length ? buf : buf.subarray(0, length));
    if (this.pending !== undefined) this.pending = owned(this.pending);
  };

  private take(chunk: Buffer): void {
    switch (this.phase) {
      case BODY:
        if (this.bodyRead) this.feedBody(chunk, 0);
        else {
          this.append(chunk);
          this.capBody();
        }
        return;
      case IDLE:
      case HEAD:
        this.append(chunk);
        this.parseNext();
        return;
      case SERVING:
        this.append(chunk);
        this.capPipeline();
        return;
      default:
      // CLOSING: what a refused client still sends is read and dropped.
    }
  }

  private append(chunk: Buffer): void {
    this.pending = this.pending === undefined || this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
  }

  private capPipeline(): void {
    if (this.pending !== undefined && this.pending.length > PIPELINE_BYTES && !this.pipelinePaused) {
      this.pipelinePaused = true;
      this.socket.pause();
    }
  }

  /**
   * Body bytes nobody reads yet wait in `pending` (how they are given — decoded, or with their chunk
   * framing — is the reader's choice); past the pipelining cap the socket is paused until it reads.
   */
  private capBody(): void {
    if (this.pending !== undefined && this.pending.length > PIPELINE_BYTES && !this.bodyPaused) {
      this.bodyPaused = true;
      this.socket.pause();
    }
  }

  /** The request being served. */
  private get req(): Http1Request | undefined {
    return this.res?.req;
  }

  /** Parses the head at the start of `pending`, and starts its request when it is complete. */
  private parseNext(): void {
    const buf = this.pending;
    if (buf !== undefined && buf.length > 0) this.parseHead(buf, buf.length);
  }

  /** Parses the head at the start of buf[0, n) (the pending bytes, or a read); starts its request when it is complete. */
  private parseHead(buf: Buffer, n: number): void {
    const limit = this.host.maxHeaderSize;
    const end = findHeadEnd(buf, 0, this.scanned, n);
    if (end < 0) {
      const partial = n === buf.length ? buf : buf.subarray(0, n);
      this.pending = partial;
      // The header timeout runs from the first bytes of a head that did not come whole (one that did has no wait to bound).
      if (this.phase === IDLE) {
        this.phase = HEAD;
        this.deadline = epochMs() + this.host.headerTimeout;
        this.onDeadline = TIMEOUT_408;
      }
      const problem = checkPartialHead(partial, 0, Math.max(0, this.scanned - 1), limit);
      this.scanned = n;
      if (problem) this.refuse(problem);
      return;
    }
    this.scanned = 0;
    const head = parseRequestHead(buf, 0, end, limit);
    if (head instanceof HeadError) {
      this.refuse(head);
      return;
    }
    this.pending = end < n ? buf.subarray(end, n) : undefined;
    this.start(head);
  }

  private start(head: RequestHead): void {
    const host = this.host;
    const req = new Http1Request(head, this.socket, this);
    const res = new Http1Response(req, this.socket, this, head.keepAlive && !host.draining);
    this.res = res;
    if (head.upgrade && req.bodyLength === 0 && host.wantsUpgrade(req)) {
      this.handOff(req, res);
      return;
    }
    if (req.bodyLength === 0) {
      req.complete = true;
      req.endBody();
      this.phase = SERVING;
      this.deadline = 0;
    } else {
      this.phase = BODY;
      this.deadline = epochMs() + host.bodyTimeout;
      this.onDeadline = TIMEOUT_408;
      this.continueOwed = head.expectContinue;
      this.chunked = req.bodyLength < 0;
      this.bodyRead = !this.chunked;
      this.bodyLeft = req.bodyLength;
      if (this.chunked) {
        this.decoder ??= new ChunkedDecoder(this, host.maxHeaderSize);
        this.decoder.reset();
      }
    }
    host.onRequest(req, res);
    if (this.phase !== BODY) this.capPipeline();
    else if (!this.bodyRead) this.capBody();
    else if (this.pending !== undefined) {
      const rest = this.pending;
      this.pending = undefined;
      this.feedBody(rest, 0);
    }
  }

  /** A WebSocket upgrade: the socket leaves this server with whatever followed the head. */
  private handOff(req: Http1Request, res: Http1Response): void {
    const socket = this.socket;
    // The answers before the upgrade go before anything written to the socket from now on.
    this.writer.flush();
    const head = this.pending === undefined ? EMPTY : owned(this.pending);
    this.pending = undefined;
    this.phase = GONE;
    this.deadline = 0;
    socket.removeListener('data', this.onData);
    releaseReads(socket);
    socket.removeListener('end', this.onEnd);
    socket.removeListener('drain', this.onDrain);
    socket.removeListener('close', this.onClose);
    this.host.forget(this);
    req.complete = true;
    req.endBody();
    // The response (a refusal, or nothing once tunnelled) still learns when the client goes or is slow.
    socket.once('close', () => res.emitClose());
    socket.on('drain', () => res.emit('drain'));
    // An upgrade started from pipelined bytes the socket was paused for: the handler gets it reading (as when
    // every response resumed it), not resumed behind its back afterwards (endPipelinePause).
    if (this.pipelinePaused) this.unpausePipeline();
    this.host.onUpgrade(req, res, socket, head);
  }

  private feedBody(buf: Buffer, start: number): void {
    let end: number;
    if (this.chunked) {
      const decoder = this.decoder as ChunkedDecoder;
      end = decoder.decode(buf, start, buf.length);
      if (end < 0) {
        this.refuse(new HeadError(400, decoder.error ?? 'invalid chunked body'));
        return;
      }
      const req = this.req as Http1Request;
      if (req.chunkFraming) {
        // The framing as received, up to the trailer section; the decoder checked every byte of it.
        const to = decoder.trailersFrom >= 0 ? decoder.trailersFrom : decoder.inTrailers ? start : end;
        if (to > start) this.pushBody(req, start === 0 && to === buf.length ? buf : buf.subarray(start, to));
        if (decoder.done) this.pushBody(req, CRLF);
      }
      if (!decoder.done) return;
    } else {
      const take = Math.min(this.bodyLeft, buf.length - start);
      this.bodyLeft -= take;
      end = start + take;
      this.chunkData(buf, start, end);
      if (this.bodyLeft > 0) return;
    }
    this.bodyDone();
    if (end < buf.length) {
      this.pending = buf.subarray(end);
      this.capPipeline();
    }
  }

  /** Decoded body bytes: to the request (unless it passes the chunk framing on instead). */
  chunkData(buf: Buffer, start: number, end: number): void {
    if (end <= start) return;
    const req = this.req as Http1Request;
    req.payloadBytes += end - start;
    if (!req.chunkFraming) this.pushBody(req, start === 0 && end === buf.length ? buf : buf.subarray(start, end));
  }

  /** Body bytes to the request, pausing the socket when its buffer is full. */
  private pushBody(req: Http1Request, bytes: Buffer): void {
    if (!req.pushBody(bytes) && !this.bodyPaused) {
      this.bodyPaused = true;
      this.socket.pause();
    }
  }

  private bodyDone(): void {
    const req = this.req as Http1Request;
    req.complete = true;
    req.endBody();
    this.phase = SERVING;
    this.deadline = 0;
    this.continueOwed = false;
    // No _read comes after the end: a socket paused for the body resumes here (pipelined bytes are capped apart).
    if (this.bodyPaused) {
      this.bodyPaused = false;
      if (!this.pipelinePaused) this.socket.resume();
    }
  }

  /** The request's reader wants more (Readable._read). */
  bodyWanted(): void {
    const req = this.req;
    if (req === undefined || req.complete) return;
    if (this.continueOwed) {
      this.continueOwed = false;
      (this.res as Http1Response).writeContinue();
    }
    if (this.bodyPaused) {
      this.bodyPaused = false;
      if (!this.pipelinePaused) this.socket.resume();
    }
    if (!this.bodyRead && this.phase === BODY) {
      // The first read: what arrived before it is given now.
      this.bodyRead = true;
      const waiting = this.pending;
      this.pending = undefined;
      if (waiting !== undefined && waiting.length > 0) this.feedBody(waiting, 0);
    }
  }

  /** ResponseOwner: whether the connection may serve another request after `res`. */
  mayKeepAlive(res: Http1Response): boolean {
    // A body still arriving when the answer starts (an early refusal) is not read to its end: the connection closes.
    return res === this.res && !this.host.draining && !this.clientEnded && this.phase === SERVING;
  }

  /** ResponseOwner: the last byte of the current response reached the socket (told from a write's callback, or from end()). */
  readonly responseFlushed = (err?: Error | null): void => {
    const res = this.res;
    const req = this.req;
    // A failed write is followed by 'close', which cleans up.
    if (err || res === undefined || req === undefined) return;
    this.res = undefined;
    // An upgrade refused with a response: the socket is the handler's now.
    if (this.phase === GONE) {
      res.markFlushed();
      return;
    }
    if (!req.complete) req.destroy();
    const reuse = res.keepAlive && req.complete && !this.clientEnded && !this.host.draining && this.phase === SERVING;
    res.markFlushed();
    if (this.phase === GONE || this.phase === CLOSING) return;
    if (!reuse) {
      this.close();
      return;
    }
    this.phase = IDLE;
    this.deadline = IDLE_UNSTAMPED;
    this.onDeadline = CUT;
    // This may run inside the response's end() (see Http1Response.end): a pipelined request starts on the
    // next tick, not within the try that answered the previous one (its lease is not even ended yet).
    if (this.pending !== undefined && this.pending.length > 0) process.nextTick(this.parseWaiting);
    else if (this.pipelinePaused) this.endPipelinePause();
  };

  /** Starts the pipelined request that waited behind the last response, unless a read started it first. */
  private readonly parseWaiting = (): void => {
    if (this.phase === IDLE) this.parseNext();
    if (this.pipelinePaused) this.endPipelinePause();
  };

  /**
   * Reads again, unless the request just started from `pending` is being served and more than the cap
   * still waits behind it: those are served first. (Resuming at every response read one more read — up to
   * 64 KiB — per request served, and a client that pipelines large heads and reads no answer grew `pending`
   * by megabytes.)
   */
  private endPipelinePause(): void {
    if (this.phase === SERVING && this.pending !== undefined && this.pending.length > PIPELINE_BYTES) return;
    this.unpausePipeline();
  }

  /** The pipelining cap no longer holds the socket (a body's backpressure still may). */
  private unpausePipeline(): void {
    this.pipelinePaused = false;
    if (!this.bodyPaused) this.socket.resume();
  }

  private readonly onDrain = (): void => {
    this.res?.emit('drain');
  };

  /**
   * The client half-closed: what it sent is still answered, then the connection ends; with
   * abort_on_close, a request whose answer has not started is given up (the client left).
   */
  private readonly onEnd = (): void => {
    this.clientEnded = true;
    if (this.phase === SERVING && this.host.abortOnClose && this.res !== undefined && !this.res.headersSent) {
      this.socket.destroy();
      return;
    }
    switch (this.phase) {
      case IDLE:
      case HEAD:
        this.close();
        return;
      case BODY:
        // The body can never complete now.
        this.req?.destroy();
        return;
      case CLOSING:
        this.socket.destroySoon();
        return;
      default:
    }
  };

  private readonly onClose = (): void => {
    const phase = this.phase;
    this.phase = GONE;
    this.deadline = 0;
    this.host.forget(this);
    if (phase === GONE) return;
    const req = this.req;
    if (req !== undefined && !req.complete) req.destroy();
    this.res?.emitClose();
    this.res = undefined;
  };

  /** Ends the connection after what was written (keep-alive over, or the client asked for close). */
  close(): void {
    if (this.phase === GONE || this.phase === CLOSING) return;
    this.phase = CLOSING;
    this.pending = undefined;
    this.deadline = epochMs() + LINGER_MS;
    this.onDeadline = CUT;
    const socket = this.socket;
    socket.resume();
    this.writer.flush();
    // Our FIN; the socket goes when the client's comes (or at the linger deadline).
    socket.end();
    if (this.clientEnded) socket.destroySoon();
  }

  /** Answers a refused request with its status and closes; nothing after it on this connection is read. */
  refuse(error: HeadError): void {
    if (this.phase === GONE || this.phase === CLOSING) return;
    const res = this.res;
    const req = this.req;
    if (req !== undefined && !req.complete) req.destroy();
    this.writer.flush();
    if (res?.headersSent) {
      this.socket.destroy();
      return;
    }
    res?.abandon();
    const code = STATUS_CODES_BY_ERROR[error.status] ?? 'BAD_REQUEST';
    this.socket.write(
      `HTTP/1.1 ${error.status} ${REASONS[error.status] ?? 'Bad Request'}\r\nconnection: close\r\ncontent-length: 0\r\nx-velocity-error: ${code}\r\n\r\n`,
      'latin1',
    );
    this.close();
    // The handler's response (if any) is over: it sees 'close' and records the request.
    res?.emitClose();
  }

  /** The sweep found the deadline passed. */
  expire(): void {
    if (this.onDeadline === TIMEOUT_408 && (this.phase === HEAD || this.phase === BODY)) {
      this.refuse(new HeadError(408, 'request timeout'));
      return;
    }
    this.deadline = 0;
    this.socket.destroy();
  }

  /** The sweep's first look at a connection idle since its last response (IDLE_UNSTAMPED): idle from `now`. */
  idleFrom(now: number): void {
    this.idleSince = now;
    this.deadline = now + this.host.keepAliveTimeout;
  }

  /** Server shutdown: a connection idle for a while closes now; a busy one closes after its response. */
  closeIfIdle(now: number): void {
    // One the sweep has not seen idle yet became idle just now.
    if (this.idle && this.deadline !== IDLE_UNSTAMPED && now - this.idleSince >= IDLE_BEFORE_CLOSE_MS) this.close();
  }
}

function onSocketError(): void {
  // 'close' follows every socket error; the connection is cleaned up there.
}
