/**
 * One keep-alive HTTP/1.1 connection to a server, on a raw `net`/`tls` socket:
 * it carries one exchange at a time, parses the response, pushes back on the
 * server when the client is slow, and goes back to its pool only when the
 * response ended exactly where its framing said (no byte more, nothing left
 * unsent, no `Connection: close`).
 */
import { Buffer } from 'node:buffer';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect } from 'node:tls';
import { readDirectly } from '../socket-reader.ts';
import { SocketWriter } from '../socket-writer.ts';
import { socketInternalsAllowed } from '../stream-wrap.ts';
import { type Expiring, SWEEP_TICK_MS } from './deadline-sweep.ts';
import type { Exchange, ExchangeCarrier } from './http1-exchange.ts';
import { type ResponseHead, ResponseParser, type ResponseParserEvents } from './response-parser.ts';

/** What a connection needs from its pool. */
export interface ConnectionHome {
  readonly host: string;
  readonly port: number;
  /** tls.connect options for https:// servers; undefined for plain ones. */
  readonly tls: object | undefined;
  readonly connectTimeout: number;
  /** Returns a connection whose exchange ended cleanly; `serverIdleMs`: how long the server said it keeps it idle (-1: it did not say). */
  release(connection: Http1Connection, serverIdleMs: number): void;
  /** A connection closed (idle or not). */
  forget(connection: Http1Connection): void;
  /** Sends an exchange again on a fresh connection (its stale keep-alive one failed before any byte was exchanged). */
  retryFresh(exchange: Exchange): void;
  track(item: Expiring): void;
  untrack(item: Expiring): void;
}

const CONNECTING = 0;
const WAITING = 1;
const RECEIVING = 2;
const IDLE = 3;
const CLOSED = 4;

/**
 * What one read of a server's answer takes at most (plain connections). A client that stops reading
 * keeps about one read and its socket's high-water mark in Velocity (#22): 16 KiB, not Node's 64 KiB
 * reads plus the stream's buffer. Each read gets a buffer of its own, because the client's socket may
 * still hold the last one.
 */
const READ_SIZE = 16 * 1024;
/** The buffer a paused connection waits with: the read after it resumes is a short one. */
const PAUSED_READ_SIZE = 1024;
/** Not from Buffer's shared 64 KiB pool: a slice kept by a slow client would keep the whole pool block. */
const newReadBuffer = (size: number): Buffer => Buffer.allocUnsafeSlow(size);
/**
 * Where idle plain connections read: one buffer per thread, not 16 KiB kept by each (256 connections
 * left idle by a burst held 4 MB until their keep-alive timeout). An idle connection reads only bytes
 * nobody asked for (it then closes unread) or the first read of its next response; any of them may land
 * here next, so body bytes of such a read are copied to a buffer of the connection's own before anything
 * can keep them (onResponseBody); the head is parsed into strings.
 */
const IDLE_READ = newReadBuffer(READ_SIZE);
/** Read buffers given up by connections going idle, for the next one that needs a buffer (per thread, 256 KiB at most). */
const SPARE_READS = 16;
const spareReads: Buffer[] = [];
const takeReadBuffer = (): Buffer => spareReads.pop() ?? newReadBuffer(READ_SIZE);

function upstreamError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

export class Http1Connection implements ResponseParserEvents, Expiring, ExchangeCarrier {
  readonly socket: Socket;
  /** The request head's write (straight to the socket's handle when it can be); a body's go through the socket and its 'drain'. */
  private readonly writer: SocketWriter;
  /** Whether the socket may be read and written below net's public API (socket-reader.ts, socket-writer.ts). */
  private readonly internals: boolean;
  private readonly home: ConnectionHome;
  private readonly parser: ResponseParser;
  private exchange: Exchange | undefined;
  private phase = CONNECTING;
  /** Exchanges this connection completed: a reused connection may have gone stale. */
  private served = 0;
  private head: ResponseHead | undefined;
  private paused = false;
  /**
   * Plain connections: the buffer of the connection's own (the next read goes into it unless idle:
   * undefined then, the read goes into IDLE_READ), and whether a client still holds part of it.
   */
  private buffer: Buffer | undefined;
  private bufferHeld = false;
  /** During a read into IDLE_READ, how much of `buffer` its body bytes took so far; -1 during other reads. */
  private copied = -1;
  /** performance.now() at the last read from the server: one clock read per read serves its deadlines and the pool's idle timeout. */
  lastReadAt = 0;
  deadline = 0;
  /** When an idle connection is closed (the pool's keep-alive timeout). */
  private idleDeadline = 0;
  /**
   * Whether the socket holds the event loop open. A busy connection must; an idle one must not (a
   * process with nothing else to do exits). It lets go after a tick of idleness, not per response:
   * ref() and unref() are calls into libuv, and under load a connection is idle for microseconds.
   */
  private referenced = true;

  constructor(home: ConnectionHome, first: Exchange) {
    this.home = home;
    this.parser = new ResponseParser(this);
    this.exchange = first;
    first.carriedBy(this);
    const options = { host: home.host, port: home.port, noDelay: true };
    if (home.tls) {
      this.socket = tlsConnect({ ...options, ...home.tls, ALPNProtocols: ['http/1.1'] });
      this.socket.on('data', this.onData);
    } else {
      // Read into buffers of our own size, straight to onRead: no stream buffering, and a pause stops reading at once.
      this.socket = connect({ ...options, onread: { buffer: this.readBuffer, callback: this.onRead } });
    }
    this.internals = socketInternalsAllowed();
    this.writer = new SocketWriter(this.socket, this.internals);
    this.socket.once(home.tls ? 'secureConnect' : 'connect', this.onConnect);
    this.socket.on('end', this.onEnd);
    this.socket.on('error', this.onError);
    this.socket.once('close', this.onClose);
    this.deadline = performance.now() + home.connectTimeout;
    home.track(this);
  }

  /** Read through a getter: parser callbacks change the phase behind the compiler's narrowing. */
  private get closed(): boolean {
    return this.phase === CLOSED;
  }

  /** Takes an exchange: the connection must be idle (from the pool) or just connected; `now` is a performance.now() reading of this turn. */
  start(exchange: Exchange, now: number): void {
    this.exchange = exchange;
    exchange.carriedBy(this);
    this.head = undefined;
    this.phase = WAITING;
    this.deadline = 0;
    if (!this.referenced) {
      this.referenced = true;
      this.socket.ref();
    }
    this.parser.reset(exchange.request.method === 'HEAD');
    exchange.send(this.writer);
    if (exchange.requestDone) this.requestSent(now);
  }

  abort(): void {
    this.close();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const idle = this.exchange?.request.idleTimeout ?? 0;
    if (this.phase === RECEIVING && idle > 0) this.deadline = performance.now() + idle;
    this.socket.resume();
  }

  expire(now: number): void {
    switch (this.phase) {
      case CONNECTING:
        this.fail(upstreamError('VELOCITY_CONNECT_TIMEOUT', `connect to ${this.home.host}:${this.home.port} timed out`));
        return;
      case WAITING:
        this.fail(upstreamError('VELOCITY_HEADERS_TIMEOUT', 'no response head within the response-header timeout'));
        return;
      case RECEIVING:
        this.fail(upstreamError('VELOCITY_BODY_TIMEOUT', 'the response body stalled past the idle timeout'));
        return;
      case IDLE:
        if (this.referenced && now < this.idleDeadline) {
          this.referenced = false;
          this.socket.unref();
          this.deadline = this.idleDeadline;
          return;
        }
        this.close();
        return;
      default:
        this.close();
    }
  }

  /** The whole request went out (`now`, when the caller read the clock this turn): the response-header timeout starts. */
  requestSent(now?: number): void {
    if (this.phase !== WAITING) return;
    const timeout = this.exchange?.request.responseHeaderTimeout ?? 0;
    this.deadline = timeout > 0 ? (now ?? performance.now()) + timeout : 0;
  }

  private readonly onConnect = (): void => {
    // Now that the socket has its last handle (connecting to a name may try several): reads with bytes come straight from it.
    if (this.internals && this.home.tls === undefined) readDirectly(this.socket, this.onBytes);
    const exchange = this.exchange;
    if (!exchange || exchange.aborted) {
      this.close();
      return;
    }
    this.start(exchange, performance.now());
  };

  /**
   * The buffer for the next read (plain connections): the same one while clients take each read
   * whole (no allocation per response), a new one when a slow client still holds part of it, and a
   * small one while paused (the start of the buffer when it is free: a response that pauses and
   * resumes often, e.g. through compression, would otherwise get two new buffers per pause). A
   * connection not waiting for or receiving a response gives its own up and reads into IDLE_READ; so
   * does a new one: net keeps the first buffer it is given for the socket's life.
   */
  private readonly readBuffer = (): Buffer => {
    if (this.phase !== WAITING && this.phase !== RECEIVING) {
      const own = this.buffer;
      if (own !== undefined && !this.bufferHeld && own.length === READ_SIZE && spareReads.length < SPARE_READS) spareReads.push(own);
      this.buffer = undefined;
      this.bufferHeld = false;
      return IDLE_READ;
    }
    if (this.buffer === undefined || this.bufferHeld || (!this.paused && this.buffer.length < READ_SIZE)) {
      this.buffer = this.paused ? newReadBuffer(PAUSED_READ_SIZE) : takeReadBuffer();
      this.bufferHeld = false;
    }
    return this.paused && this.buffer.length > PAUSED_READ_SIZE ? this.buffer.subarray(0, PAUSED_READ_SIZE) : this.buffer;
  };

  /**
   * Plain connections' reads through net, into readBuffer's buffers (parsed in place: no view of the
   * filled part); pausing is onResponseBody's. `this.buffer`, not net's: reads that come straight
   * from the handle (onBytes) do not tell net which buffer they went into.
   */
  private readonly onRead = (length: number): boolean => {
    this.receivedInto(length);
    return true;
  };

  /** Plain connections' reads straight from the handle (socket-reader.ts): the same, and the next read's buffer. */
  private readonly onBytes = (length: number): Buffer => {
    this.receivedInto(length);
    return this.readBuffer();
  };

  /** A plain connection's read of `length` bytes, into its own buffer or, idle until now, into IDLE_READ. */
  private receivedInto(length: number): void {
    if (this.buffer !== undefined) {
      this.received(this.buffer, length);
      return;
    }
    this.copied = 0;
    this.received(IDLE_READ, length);
    this.copied = -1;
  }

  /** TLS connections' reads. */
  private readonly onData = (chunk: Buffer): void => {
    this.received(chunk, chunk.length);
  };

  /** The bytes data[0, length) came from the server. */
  private received(data: Buffer, length: number): void {
    if (this.phase !== WAITING && this.phase !== RECEIVING) {
      // Bytes nobody asked for (an idle connection): the framing can no longer be trusted.
      this.close();
      return;
    }
    this.lastReadAt = performance.now();
    let used: number;
    try {
      used = this.parser.execute(data, length);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    if (this.parser.complete && !this.closed) this.complete(used === length);
  }

  private readonly onEnd = (): void => {
    if (this.phase !== WAITING && this.phase !== RECEIVING) {
      this.close();
      return;
    }
    // Only a close-delimited body ends well with the server's close; anything else was cut (a reset, not a bad response).
    if (!this.parser.untilClose) {
      this.fail(upstreamError('VELOCITY_UPSTREAM_CLOSED', 'the server closed the connection before the response was complete'));
      return;
    }
    this.parser.finish();
    if (!this.closed) this.complete(false);
  };

  private readonly onError = (err: Error): void => {
    this.fail(err);
  };

  private readonly onClose = (): void => {
    if (this.phase === WAITING || this.phase === RECEIVING || this.phase === CONNECTING) {
      this.fail(upstreamError('VELOCITY_UPSTREAM_CLOSED', 'the server closed the connection before the response was complete'));
    }
    this.phase = CLOSED;
    this.home.untrack(this);
    this.home.forget(this);
  };

  onInformational(status: number, headers: string[]): void {
    this.exchange?.sink.onInformational(status, headers);
  }

  onResponseHead(head: ResponseHead): boolean {
    const exchange = this.exchange as Exchange;
    this.head = head;
    this.phase = RECEIVING;
    this.deadline = exchange.request.idleTimeout > 0 ? this.lastReadAt + exchange.request.idleTimeout : 0;
    return exchange.sink.onHead(head, exchange.requestDone, this.lastReadAt);
  }

  onResponseBody(data: Buffer): void {
    const exchange = this.exchange;
    if (!exchange || exchange.aborted) return;
    const sink = exchange.sink;
    // Bytes read into IDLE_READ are made the connection's own first, unless the sink copies them before onData returns.
    const passed = this.copied >= 0 && sink.copiesChunk?.(data.length) === true;
    const more = sink.onData(this.copied < 0 || passed ? data : this.ownCopy(data));
    if (!passed && !sink.chunkReleased()) this.bufferHeld = true;
    if (!more && !this.paused) {
      this.paused = true;
      this.deadline = 0;
      this.socket.pause();
    } else if (!this.paused && exchange.request.idleTimeout > 0) this.deadline = this.lastReadAt + exchange.request.idleTimeout;
  }

  /** Body bytes read into IDLE_READ, copied after the others of the same read into a buffer of the connection's own. */
  private ownCopy(chunk: Buffer): Buffer {
    this.buffer ??= takeReadBuffer();
    const at = this.copied;
    this.buffer.set(chunk, at);
    this.copied = at + chunk.length;
    return this.buffer.subarray(at, this.copied);
  }

  onResponseComplete(): void {
    // Acted on in complete(), once the parser returned and it is known whether bytes followed.
  }

  /** The response ended by its framing; `clean` when no byte followed it in the same read. */
  private complete(clean: boolean): void {
    const exchange = this.exchange as Exchange;
    const reusable = clean && exchange.requestDone && (this.head?.keepAlive ?? false) && !exchange.aborted;
    const serverIdleMs = this.head?.keepAliveTimeoutMs ?? -1;
    exchange.detachBody();
    exchange.carriedBy(undefined);
    this.exchange = undefined;
    this.head = undefined;
    if (reusable) {
      this.served++;
      this.phase = IDLE;
      this.deadline = 0;
      if (this.paused) {
        this.paused = false;
        this.socket.resume();
      }
      this.home.release(this, serverIdleMs);
    } else this.close();
    if (!exchange.aborted) exchange.sink.onEnd();
  }

  private fail(err: Error & { code?: string }): void {
    const exchange = this.exchange;
    const phase = this.phase;
    this.exchange = undefined;
    this.close();
    if (!exchange || exchange.aborted) return;
    exchange.carriedBy(undefined);
    // A kept-alive connection the server closed as the request went out: nothing was exchanged, so it is sent again elsewhere.
    const stale =
      this.served > 0 &&
      phase === WAITING &&
      this.parser.bytesSeen === 0 &&
      exchange.bodyBytes === 0 &&
      !exchange.moved &&
      (err.code === 'VELOCITY_UPSTREAM_CLOSED' || err.code === 'ECONNRESET' || err.code === 'EPIPE');
    if (stale) {
      exchange.detachBody();
      exchange.moved = true;
      this.home.retryFresh(exchange);
      return;
    }
    exchange.detachBody();
    exchange.sink.onError(err, phase !== CONNECTING);
  }

  /** Closes the socket; an exchange on it hears nothing more. */
  close(): void {
    if (this.phase === CLOSED) return;
    this.phase = CLOSED;
    this.deadline = 0;
    this.socket.destroy();
  }

  /**
   * Whether an idle connection the pool hands out is still worth trying. Not the socket's readyState
   * (stream getters on every request): it says 'open' until the 'end' callback, which closes the
   * connection, and an idle connection is connected and never ended by us.
   */
  get usable(): boolean {
    return this.phase === IDLE && !this.socket.destroyed;
  }

  /** For the idle timeout: idle connections expire like exchanges do (first a tick after going idle, to let go of the event loop). */
  idleUntil(deadline: number): void {
    this.idleDeadline = deadline;
    this.deadline = Math.min(deadline, this.lastReadAt + SWEEP_TICK_MS);
  }
}
