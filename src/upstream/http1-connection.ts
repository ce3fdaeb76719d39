/**
 * One keep-alive HTTP/1.1 connection to a server, on a raw `net`/`tls` socket:
 * it carries one exchange at a time, parses the response, pushes back on the
 * server when the client is slow, and goes back to its pool only when the
 * response ended exactly where its framing said (no byte more, nothing left
 * unsent, no `Connection: close`).
 */
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Expiring } from './deadline-sweep.ts';
import type { Exchange } from './http1-exchange.ts';
import { type ResponseHead, ResponseParser, type ResponseParserEvents } from './response-parser.ts';

/** What a connection needs from its pool. */
export interface ConnectionHome {
  readonly host: string;
  readonly port: number;
  /** tls.connect options for https:// servers; undefined for plain ones. */
  readonly tls: object | undefined;
  readonly connectTimeout: number;
  /** Returns a connection whose exchange ended cleanly. */
  release(connection: Http1Connection): void;
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

function upstreamError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

export class Http1Connection implements ResponseParserEvents, Expiring {
  readonly socket: Socket;
  private readonly home: ConnectionHome;
  private readonly parser: ResponseParser;
  private exchange: Exchange | undefined;
  private phase = CONNECTING;
  /** Exchanges this connection completed: a reused connection may have gone stale. */
  private served = 0;
  private head: ResponseHead | undefined;
  private paused = false;
  deadline = 0;

  constructor(home: ConnectionHome, first: Exchange) {
    this.home = home;
    this.parser = new ResponseParser(this);
    this.exchange = first;
    first.carrier = this;
    const options = { host: home.host, port: home.port, noDelay: true };
    this.socket = home.tls ? tlsConnect({ ...options, ...home.tls, ALPNProtocols: ['http/1.1'] }) : connect(options);
    this.socket.once(home.tls ? 'secureConnect' : 'connect', this.onConnect);
    this.socket.on('data', this.onData);
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

  /** Takes an exchange: the connection must be idle (from the pool) or just connected. */
  start(exchange: Exchange): void {
    this.exchange = exchange;
    exchange.carrier = this;
    this.head = undefined;
    this.phase = WAITING;
    this.deadline = 0;
    this.socket.ref();
    this.parser.reset(exchange.request.method === 'HEAD');
    exchange.onRequestDone = this.onRequestDone;
    exchange.send(this.socket);
    if (exchange.requestDone) this.onRequestDone();
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

  expire(): void {
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
      default:
        this.close();
    }
  }

  private readonly onRequestDone = (): void => {
    if (this.phase !== WAITING) return;
    const timeout = this.exchange?.request.responseHeaderTimeout ?? 0;
    this.deadline = timeout > 0 ? performance.now() + timeout : 0;
  };

  private readonly onConnect = (): void => {
    const exchange = this.exchange;
    if (!exchange || exchange.aborted) {
      this.close();
      return;
    }
    this.start(exchange);
  };

  private readonly onData = (chunk: Buffer): void => {
    if (this.phase !== WAITING && this.phase !== RECEIVING) {
      // Bytes nobody asked for (an idle connection): the framing can no longer be trusted.
      this.close();
      return;
    }
    let used: number;
    try {
      used = this.parser.execute(chunk);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    if (this.parser.complete && !this.closed) this.complete(used === chunk.length);
  };

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

  onResponseHead(head: ResponseHead): void {
    const exchange = this.exchange as Exchange;
    this.head = head;
    this.phase = RECEIVING;
    this.deadline = exchange.request.idleTimeout > 0 ? performance.now() + exchange.request.idleTimeout : 0;
    exchange.sink.onHead(head, exchange.requestDone);
  }

  onResponseBody(chunk: Buffer): void {
    const exchange = this.exchange;
    if (!exchange || exchange.aborted) return;
    if (!exchange.sink.onData(chunk) && !this.paused) {
      this.paused = true;
      this.deadline = 0;
      this.socket.pause();
    } else if (!this.paused && exchange.request.idleTimeout > 0) this.deadline = performance.now() + exchange.request.idleTimeout;
  }

  onResponseComplete(): void {
    // Acted on in complete(), once the parser returned and it is known whether bytes followed.
  }

  /** The response ended by its framing; `clean` when no byte followed it in the same read. */
  private complete(clean: boolean): void {
    const exchange = this.exchange as Exchange;
    const reusable = clean && exchange.requestDone && (this.head?.keepAlive ?? false) && !exchange.aborted;
    exchange.detachBody();
    exchange.carrier = undefined;
    exchange.onRequestDone = undefined;
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
      this.socket.unref();
      this.home.release(this);
    } else this.close();
    if (!exchange.aborted) exchange.sink.onEnd();
  }

  private fail(err: Error & { code?: string }): void {
    const exchange = this.exchange;
    const phase = this.phase;
    this.exchange = undefined;
    this.close();
    if (!exchange || exchange.aborted) return;
    exchange.carrier = undefined;
    exchange.onRequestDone = undefined;
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

  /** Whether an idle connection the pool hands out is still worth trying. */
  get usable(): boolean {
    return this.phase === IDLE && !this.socket.destroyed && this.socket.readyState === 'open';
  }

  /** For the idle timeout: idle connections expire like exchanges do. */
  idleUntil(deadline: number): void {
    this.deadline = deadline;
  }
}
