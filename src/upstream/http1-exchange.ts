/**
 * One request/response exchange with a server over a pooled HTTP/1.1
 * connection: what is sent (head, then a buffered or streamed body) and whom
 * the answer goes to. The connection drives it; the exchange keeps what must
 * survive a move to a fresh connection (a stale keep-alive socket).
 */
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import type { SocketWriter } from '../socket-writer.ts';
import { headRetained, requestHeadBytes } from './request-head-bytes.ts';
import type { ResponseHead } from './response-parser.ts';

type Listener = (...args: never[]) => void;

/** A whole request body in memory: one buffer, or the pieces it arrived in. */
export type BufferedBody = Buffer | readonly Buffer[];

/** A request body sent as it arrives (a Readable, or the HTTP/1.1 server's request), with backpressure. */
export interface StreamedBody {
  on(event: 'data' | 'end', listener: Listener): unknown;
  once(event: 'end', listener: Listener): unknown;
  removeListener(event: 'data' | 'end', listener: Listener): unknown;
  pause(): unknown;
  resume(): unknown;
  /** The stream carries chunked framing already (sizes, CRLFs, last chunk): sent as it is. */
  readonly chunkFraming?: boolean;
}

export interface UpstreamRequest {
  method: string;
  /** Origin-form target as the client sent it. */
  path: string;
  /** Flat list, name, value, …, hop-by-hop headers already removed. */
  headers: string[];
  /** None, a buffer (replayable), or a stream sent once with backpressure. */
  body: BufferedBody | StreamedBody | null;
  /** From the end of the request to the response head. */
  responseHeaderTimeout: number;
  /** Between two reads of the response body. */
  idleTimeout: number;
  /** A buffered body's writes did not all complete at once: the socket still holds its bytes for a while. */
  bodyLingers?(): void;
}

/** Where an exchange reports; the forwarder implements it. */
export interface ExchangeSink {
  /** A 1xx response before the final one. */
  onInformational(status: number, headers: string[]): void;
  /**
   * The final head. `requestDone` is false when the server answered before the whole request body was sent.
   * true: a chunked body is to come with its chunk framing as the server sent it (see ResponseParserEvents).
   * `readAt`: the performance.now() reading of the read that brought the head's last bytes.
   */
  onHead(head: ResponseHead, requestDone: boolean, readAt: number): boolean;
  /** Body payload (or framing, when onHead asked for it). false: the client is slow; call `exchange.resume()` when it drained. */
  onData(chunk: Buffer): boolean;
  /**
   * Whether nothing still refers to the chunk last given to onData (the client took it whole):
   * the connection may then read into the same buffer again. When unsure, false.
   */
  chunkReleased(): boolean;
  /**
   * Whether onData, given a chunk of `length` bytes now, is done with it when it returns (copies what it
   * keeps): the connection may then pass bytes that lie in a buffer the next read of another connection
   * overwrites, without copying them to a buffer of its own first. When unsure, false (or leave it out).
   */
  copiesChunk?(length: number): boolean;
  onEnd(): void;
  /** The exchange failed; `requestSent` is false when no byte of it can have reached the server. */
  onError(error: Error & { code?: string }, requestSent: boolean): void;
}

/** The connection an exchange is on: what the exchange tells it. */
export interface ExchangeCarrier {
  abort(): void;
  /** The client drained: read from the server again. */
  resume(): void;
  /** A streamed request body was sent whole (the response-header timeout starts then). */
  requestSent(): void;
}

/** Methods whose requests carry a body: an empty one still gets `content-length: 0`. Compared, not a Set lookup per request. */
const carriesBody = (method: string): boolean => method === 'POST' || method === 'PUT' || method === 'PATCH';

export class Exchange {
  readonly request: UpstreamRequest;
  readonly sink: ExchangeSink;
  /** Request body bytes handed to a socket: after one, the exchange can never move to another connection. */
  bodyBytes = 0;
  requestDone = false;
  /** Moved once to a fresh connection after a stale keep-alive one failed. */
  moved = false;
  aborted = false;
  /** The request head was written to a connected socket: the server may have seen the request. */
  headSent = false;
  private carrier: ExchangeCarrier | undefined;
  /** A streamed body being sent (made only for one: a bodiless request allocates no listeners). */
  private pump: BodyPump | undefined;

  constructor(request: UpstreamRequest, sink: ExchangeSink) {
    this.request = request;
    this.sink = sink;
  }

  /** The connection that carries the exchange from now on (undefined: none, it ended or moves). */
  carriedBy(carrier: ExchangeCarrier | undefined): void {
    this.carrier = carrier;
  }

  /** Stops the exchange without another word to the sink (the client left, a total timeout, a status to retry). */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.detachBody();
    this.carrier?.abort();
  }

  /** The client drained: read from the server again. */
  resume(): void {
    this.carrier?.resume();
  }

  /**
   * Writes the request to a connected socket: a bodiless request's head (straight to the socket's handle
   * when it can be, see socket-writer.ts), head and buffered body in one writev (no copy), a stream with backpressure.
   * The head's bytes are the shared buffer of request-head-bytes.ts: a write that keeps them past this call says so.
   */
  send(writer: SocketWriter): void {
    const socket = writer.socket;
    const { method, path, headers, body } = this.request;
    this.headSent = true;
    if (body === null) {
      const length = carriesBody(method) && !hasHeader(headers, 'content-length') ? 'content-length: 0\r\n' : '';
      // Held for the turn's end (a copy): with the turn's other writes, it wakes the server once (socket-writer.ts).
      writer.writeAtTurnEnd(requestHeadBytes(method, path, headers, length));
      this.requestDone = true;
    } else if (Buffer.isBuffer(body) || Array.isArray(body)) {
      socket.cork();
      socket.write(requestHeadBytes(method, path, headers, ''));
      this.bodyBytes = writeAll(socket, body as BufferedBody);
      socket.uncork();
      // Written at once (the usual case), the socket keeps no reference to the body's buffers.
      if (socket.writableLength !== 0) this.request.bodyLingers?.();
      this.requestDone = true;
    } else {
      const stream = body as StreamedBody;
      // A stream of unknown length (HTTP/2 without content-length, a decoded chunked body) is chunked toward the
      // server; one that carries its chunk framing already goes as it is.
      const unframed = !hasHeader(headers, 'content-length');
      // The body's writes go through the socket: they queue behind the head wherever it waits.
      writer.write(requestHeadBytes(method, path, headers, unframed ? 'transfer-encoding: chunked\r\n' : ''));
      this.pump = new BodyPump(this, stream, socket, unframed && stream.chunkFraming !== true);
    }
    if (writer.referencedBytes !== 0) headRetained();
  }

  /** Stops reading the request body (the exchange ended, failed, or moves to another connection). */
  detachBody(): void {
    const pump = this.pump;
    if (!pump) return;
    this.pump = undefined;
    pump.detach();
  }

  /** The streamed body was sent whole. */
  bodySent(): void {
    this.detachBody();
    this.requestDone = true;
    this.carrier?.requestSent();
  }
}

/** Sends a streamed request body to one socket, with backpressure; chunk-encodes it when `chunked`. */
class BodyPump {
  private readonly exchange: Exchange;
  private readonly stream: StreamedBody;
  private readonly socket: Socket;
  /** The body is chunk-encoded here (it has no length, and no framing of its own). */
  private readonly chunked: boolean;

  constructor(exchange: Exchange, stream: StreamedBody, socket: Socket, chunked: boolean) {
    this.exchange = exchange;
    this.stream = stream;
    this.socket = socket;
    this.chunked = chunked;
    stream.on('data', this.onData);
    stream.once('end', this.onEnd);
    stream.resume();
  }

  detach(): void {
    const stream = this.stream;
    stream.pause();
    stream.removeListener('data', this.onData);
    stream.removeListener('end', this.onEnd);
    this.socket.removeListener('drain', this.onDrain);
  }

  private readonly onData = (chunk: Buffer): void => {
    const socket = this.socket;
    this.exchange.bodyBytes += chunk.length;
    let more: boolean;
    if (this.chunked) {
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      more = socket.write('\r\n', 'latin1');
      socket.uncork();
    } else more = socket.write(chunk);
    if (!more) {
      this.stream.pause();
      socket.once('drain', this.onDrain);
    }
  };

  private readonly onDrain = (): void => {
    this.stream.resume();
  };

  private readonly onEnd = (): void => {
    if (this.chunked) this.socket.write('0\r\n\r\n', 'latin1');
    this.exchange.bodySent();
  };
}

/** Writes a buffered body (the socket is corked: one writev with the head); returns its length. */
function writeAll(socket: Socket, body: BufferedBody): number {
  if (Buffer.isBuffer(body)) {
    socket.write(body);
    return body.length;
  }
  let length = 0;
  for (const piece of body as readonly Buffer[]) {
    socket.write(piece);
    length += piece.length;
  }
  return length;
}

function hasHeader(headers: string[], lowerName: string): boolean {
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] as string;
    if (name.length === lowerName.length && name.toLowerCase() === lowerName) return true;
  }
  return false;
}
