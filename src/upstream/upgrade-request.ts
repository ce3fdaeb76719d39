/**
 * A WebSocket upgrade request to one server on a socket of its own (an upgraded connection never goes
 * back to a pool), with Velocity's own response parser: node:http's client (and llhttp) are not on the
 * HTTP/1.1 path. The head goes out as given; the server's 101 hands over the socket and whatever bytes
 * came after the head in the same read; any other answer is streamed to the listener as its framing
 * (Content-Length, chunked, until close) says, then the socket is closed. The connect and response-header
 * timeouts are checked by the thread's deadline sweep.
 */
import type { Buffer } from 'node:buffer';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import type { DeadlineSweep, Expiring } from './deadline-sweep.ts';
import { type ResponseHead, ResponseParser, type ResponseParserEvents } from './response-parser.ts';
import type { UpstreamServer } from './server.ts';

/** What an upgrade request tells, once each step. */
export interface UpgradeListener {
  /** The server switched protocols: `socket` is the tunnel's server side (paused), `early` the bytes it sent after its head. */
  upgraded(head: ResponseHead, socket: Socket, early: Buffer): void;
  /** The server answered without switching: its head now, its body through refusalBody, then refusalEnd. */
  refused(head: ResponseHead): void;
  /** A piece of the refusal's body; false: pause until resumeRefusal(). */
  refusalBody(chunk: Buffer): boolean;
  /** The refusal's body ended (`complete`), or was cut short. */
  refusalEnd(complete: boolean): void;
  /** No answer: the connect failed, the server closed or answered garbage, a timeout passed, or abort(). `sent`: the request went out. */
  failed(error: Error & { code?: string }, sent: boolean): void;
}

export interface UpgradeTarget {
  readonly server: UpstreamServer;
  /** tls.connect options for https:// servers; undefined for plain ones. */
  readonly tls: ConnectionOptions | undefined;
  readonly connectTimeout: number;
  readonly responseHeaderTimeout: number;
}

const CONNECTING = 0;
const WAITING = 1;
const REFUSAL = 2;
const DONE = 3;

function upstreamError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

export class UpgradeRequest implements ResponseParserEvents, Expiring {
  private readonly target: UpgradeTarget;
  private readonly head: string;
  private readonly listener: UpgradeListener;
  private readonly sweep: DeadlineSweep;
  private readonly parser = new ResponseParser(this);
  private socket: Socket | undefined = undefined;
  private phase = CONNECTING;
  private sent = false;
  private switched: ResponseHead | undefined = undefined;
  /** The connect deadline, then the response-header one (Expiring); 0 once answered. */
  deadline = 0;

  /** `head`: the whole request head (request line, header lines, blank line), written as latin1. */
  constructor(target: UpgradeTarget, head: string, sweep: DeadlineSweep, listener: UpgradeListener) {
    this.target = target;
    this.head = head;
    this.sweep = sweep;
    this.listener = listener;
  }

  start(): void {
    const { server, tls } = this.target;
    const options = { host: server.host, port: server.port, noDelay: true };
    const socket = tls ? tlsConnect({ ...options, ...tls, ALPNProtocols: ['http/1.1'] }) : connect(options);
    this.socket = socket;
    socket.once(tls ? 'secureConnect' : 'connect', () => this.connected(socket));
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.once('close', this.onClose);
    this.deadline = performance.now() + this.target.connectTimeout;
    this.sweep.add(this);
  }

  /** Stops the request (the client left, a timeout of the request passed). */
  abort(reason: Error & { code?: string }): void {
    if (this.phase === REFUSAL) this.endRefusal(false);
    else this.fail(reason);
  }

  /** Reads the refusal's body on after refusalBody answered false. */
  resumeRefusal(): void {
    if (this.phase === REFUSAL) this.socket?.resume();
  }

  private connected(socket: Socket): void {
    if (this.phase !== CONNECTING) return;
    this.phase = WAITING;
    this.parser.reset(false, true);
    this.deadline = performance.now() + this.target.responseHeaderTimeout;
    this.sent = true;
    socket.write(this.head, 'latin1');
  }

  expire(): void {
    if (this.phase === CONNECTING) {
      this.fail(upstreamError('VELOCITY_CONNECT_TIMEOUT', `connect timed out after ${this.target.connectTimeout}ms`));
    } else if (this.phase === WAITING) {
      this.fail(upstreamError('VELOCITY_HEADERS_TIMEOUT', `no answer to the upgrade within ${this.target.responseHeaderTimeout}ms`));
    }
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.phase !== WAITING && this.phase !== REFUSAL) return;
    let used: number;
    try {
      used = this.parser.execute(chunk);
    } catch (err) {
      return void this.abortWith(err as Error);
    }
    const head = this.switched;
    if (head === undefined || this.phase !== WAITING) return;
    // 101: the socket is the tunnel's now, with the bytes after the head.
    const socket = this.socket as Socket;
    this.phase = DONE;
    this.untrack();
    socket.pause();
    socket.removeListener('data', this.onData);
    socket.removeListener('end', this.onEnd);
    socket.removeListener('error', this.onError);
    socket.removeListener('close', this.onClose);
    this.listener.upgraded(head, socket, chunk.subarray(used));
  };

  onInformational(): void {
    // 100 or 103 before the answer: nothing to pass on to a client that asked to upgrade.
  }

  onResponseHead(head: ResponseHead): boolean {
    this.untrack();
    if (head.status === 101) this.switched = head;
    else {
      this.phase = REFUSAL;
      this.listener.refused(head);
    }
    return false;
  }

  onResponseBody(chunk: Buffer): void {
    if (this.phase === REFUSAL && !this.listener.refusalBody(chunk)) this.socket?.pause();
  }

  onResponseComplete(): void {
    if (this.phase === REFUSAL) this.endRefusal(true);
  }

  private readonly onEnd = (): void => {
    try {
      this.parser.finish();
    } catch (err) {
      this.abortWith(err as Error);
    }
  };

  private readonly onError = (err: Error & { code?: string }): void => this.abortWith(err);

  private readonly onClose = (): void => this.abortWith(upstreamError('ECONNRESET', 'the server closed the connection'));

  /** A failure while waiting (no answer) or while relaying a refusal (cut short). */
  private abortWith(err: Error & { code?: string }): void {
    if (this.phase === REFUSAL) this.endRefusal(false);
    else this.fail(err);
  }

  private endRefusal(complete: boolean): void {
    this.phase = DONE;
    this.socket?.destroy();
    this.listener.refusalEnd(complete);
  }

  private fail(error: Error & { code?: string }): void {
    if (this.phase === DONE) return;
    this.phase = DONE;
    this.untrack();
    this.socket?.destroy();
    this.listener.failed(error, this.sent);
  }

  private untrack(): void {
    if (this.deadline !== 0) {
      this.deadline = 0;
      this.sweep.delete(this);
    }
  }
}
