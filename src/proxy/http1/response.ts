/**
 * A response written by the HTTP/1.1 server: a ProxyResponse (what the handler,
 * error answers, redirects and the forwarder write into). The head goes out with
 * the first body bytes in one write; the body is framed by the Content-Length
 * it was given, else chunked for HTTP/1.1 clients and close-delimited for
 * HTTP/1.0 ones (a chunked upstream body reaches them de-chunked); HEAD, 1xx,
 * 204 and 304 carry none. `write()` returns the socket's answer, so a slow
 * client pauses whoever feeds the response.
 */
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { epochMs } from '../../clock.ts';
import { STATUS_CODES } from '../../node-http.ts';
import { putLatin1, ScratchBytes } from '../../scratch-bytes.ts';
import type { SocketWriter } from '../../socket-writer.ts';
import type { ResponseHead } from '../../upstream/response-parser.ts';
import { responseHeadersFromRaw } from '../headers.ts';
import type { CloseWatcher, ProxyResponse } from '../proxy-message.ts';
import type { Http1Request } from './request.ts';

/** What a response needs from its connection. */
export interface ResponseOwner {
  /** Whether the connection may carry another request after this one (not draining, body read, client not gone). */
  mayKeepAlive(res: Http1Response): boolean;
  /** The last byte of `res` was handed to the socket and flushed (called once). */
  readonly responseFlushed: (err?: Error | null) => void;
  /** Writes to the client socket (straight to its handle when the socket's Writable holds nothing). */
  readonly writer: SocketWriter;
}

type HeaderValue = string | number | readonly string[];
/** The events a response emits (ProxyResponse's). */
type ResponseEvent = 'close' | 'drain' | 'finish';
type Listener = () => void;
/** A once() listener: removes itself before it runs; removeListener finds it by the function given. */
type OnceListener = Listener & { listener: Listener };
/**
 * One event's listeners as EventEmitter keeps them: none, the only one (the usual case, the handler's
 * 'close'), or several in order. An array is never changed once built (adding or removing makes a new
 * one), so an emit in progress calls exactly the listeners there were when it began, as EventEmitter does.
 */
type Listeners = Listener | Listener[] | undefined;

function withListener(list: Listeners, fn: Listener): Listeners {
  if (list === undefined) return fn;
  return typeof list === 'function' ? [list, fn] : [...list, fn];
}

function withoutListener(list: Listeners, fn: Listener): Listeners {
  const matches = (l: Listener): boolean => l === fn || (l as OnceListener).listener === fn;
  if (typeof list === 'function') return matches(list) ? undefined : list;
  if (list === undefined) return undefined;
  // The last one added goes first, as EventEmitter removes it.
  const at = list.findLastIndex(matches);
  if (at < 0) return list;
  const rest = list.toSpliced(at, 1);
  return rest.length === 1 ? rest[0] : rest;
}

function callListeners(list: Listeners): void {
  if (typeof list === 'function') list();
  else if (list !== undefined) for (let i = 0; i < list.length; i++) (list[i] as Listener)();
}

type HeaderInput = Record<string, HeaderValue | undefined> | readonly (string | readonly string[])[];

const CRLF = '\r\n';
const LAST_CHUNK = '0\r\n\r\n';
/** The CRLF that ends a chunk's data, then the last chunk. */
const BODY_END_LAST_CHUNK = `${CRLF}${LAST_CHUNK}`;
/** Bytes that would end a header line early (response splitting). */
const UNSAFE = /[\r\n\0]/;

/**
 * Bodies up to this size leave with their head (and chunk framing) in one buffer and one plain write:
 * copying a few KiB costs less than cork → buffered writes → writev.
 */
const ONE_WRITE_BODY = 3 * 1024;
/**
 * Where a head, framing and a small body are copied for that write, response after response
 * (scratch-bytes.ts); the head before a large body too. As one latin1 string they were a body string, a
 * cons string and its flattening (~210 bytes of garbage a response) before the socket copied them out again.
 */
const scratch = new ScratchBytes(8 * 1024);

let dateSecond = 0;
let dateText = '';
/** The Date header value, formatted once per second. */
function httpDate(): string {
  const now = epochMs();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

function headerLines(name: string, value: HeaderValue): string {
  if (typeof value === 'object') {
    let out = '';
    for (const v of value) out += headerLines(name, v);
    return out;
  }
  const text = typeof value === 'number' ? String(value) : value;
  if (UNSAFE.test(text) || UNSAFE.test(name)) throw new TypeError(`invalid character in the ${name} response header`);
  return `${name}: ${text}${CRLF}`;
}

// Http1Response's flags.
const HEADERS_SENT = 1;
const WRITABLE_ENDED = 2;
const WRITABLE_FINISHED = 4;
const DESTROYED = 8;
const KEEP_ALIVE = 16;
const CHUNKED = 32;
const FRAMED = 64;
const BODYLESS = 128;
const CLOSED = 256;
const ABANDONED = 512;

/**
 * Not an EventEmitter: its construction and its generic listener bookkeeping cost more per request than
 * the three events it needs, each a slot that holds one listener without an array.
 */
export class Http1Response implements ProxyResponse {
  statusCode = 200;
  statusMessage = '';
  shouldKeepAlive: boolean;
  sendDate = true;
  readonly req: Http1Request;
  readonly socket: Socket;
  /** The flags below (HEADERS_SENT…), in one field: ten booleans were 80 bytes of every response. */
  private bits = 0;
  private readonly owner: ResponseOwner;
  private stored: Map<string, [string, HeaderValue]> | undefined;
  /**
   * The head, built by writeHead and sent with the first body bytes: `headStart` (undefined until it is
   * built; the status line and the headers given, a server's own lines as they came) then `headEnd`
   * (what Velocity adds, and the blank line), apart so neither is concatenated for the usual write.
   */
  private headStart: string | undefined;
  private headEnd = '';
  /** Told first when the response closes (watchClose). */
  private closeWatcher: CloseWatcher | undefined = undefined;
  private closeListeners: Listeners = undefined;
  private drainListeners: Listeners = undefined;
  private finishListeners: Listeners = undefined;

  constructor(req: Http1Request, socket: Socket, owner: ResponseOwner, keepAlive: boolean) {
    this.req = req;
    this.socket = socket;
    this.owner = owner;
    this.shouldKeepAlive = keepAlive;
  }

  get headersSent(): boolean {
    return (this.bits & HEADERS_SENT) !== 0;
  }

  get writableEnded(): boolean {
    return (this.bits & WRITABLE_ENDED) !== 0;
  }

  get writableFinished(): boolean {
    return (this.bits & WRITABLE_FINISHED) !== 0;
  }

  get destroyed(): boolean {
    return (this.bits & DESTROYED) !== 0;
  }

  /** The connection stays open after this response (decided with the head). */
  get keepAlive(): boolean {
    return (this.bits & KEEP_ALIVE) !== 0;
  }

  private get chunked(): boolean {
    return (this.bits & CHUNKED) !== 0;
  }

  /** Chunked, with the writes carrying their chunk framing already (passChunkFraming). */
  private get framed(): boolean {
    return (this.bits & FRAMED) !== 0;
  }

  private get bodyless(): boolean {
    return (this.bits & BODYLESS) !== 0;
  }

  private get closed(): boolean {
    return (this.bits & CLOSED) !== 0;
  }

  /** The server answered in its place: destroying this response leaves the socket alone. */
  private get abandoned(): boolean {
    return (this.bits & ABANDONED) !== 0;
  }

  /** Sets (or with `on` false, clears) a flag. */
  private mark(bit: number, on = true): void {
    this.bits = on ? this.bits | bit : this.bits & ~bit;
  }

  on(event: ResponseEvent, listener: Listener): this {
    return this.setListeners(event, withListener(this.listeners(event), listener));
  }

  once(event: ResponseEvent, listener: Listener): this {
    const once = (() => {
      this.removeListener(event, once);
      listener();
    }) as OnceListener;
    once.listener = listener;
    return this.on(event, once);
  }

  watchClose(watcher: CloseWatcher): void {
    this.closeWatcher = watcher;
  }

  removeListener(event: ResponseEvent, listener: Listener): this {
    return this.setListeners(event, withoutListener(this.listeners(event), listener));
  }

  /** Calls the event's listeners (the connection emits 'drain' when the socket drained); false when there were none. */
  emit(event: ResponseEvent): boolean {
    const list = this.listeners(event);
    callListeners(list);
    return list !== undefined;
  }

  private listeners(event: ResponseEvent): Listeners {
    return event === 'close' ? this.closeListeners : event === 'drain' ? this.drainListeners : this.finishListeners;
  }

  private setListeners(event: ResponseEvent, list: Listeners): this {
    if (event === 'close') this.closeListeners = list;
    else if (event === 'drain') this.drainListeners = list;
    else this.finishListeners = list;
    return this;
  }

  get finished(): boolean {
    return this.writableEnded;
  }

  /**
   * What the socket still holds of the writes' own bytes (0: no chunk given to write() is referenced any
   * more; a write held for the turn's end is a copy).
   */
  get writableLength(): number {
    return this.owner.writer.referencedBytes;
  }

  setHeader(name: string, value: HeaderValue): this {
    (this.stored ??= new Map()).set(name.toLowerCase(), [name, value]);
    return this;
  }

  getHeader(name: string): HeaderValue | undefined {
    return this.stored?.get(name.toLowerCase())?.[1];
  }

  hasHeader(name: string): boolean {
    return this.stored?.has(name.toLowerCase()) ?? false;
  }

  removeHeader(name: string): void {
    this.stored?.delete(name.toLowerCase());
  }

  getHeaders(): Record<string, HeaderValue> {
    const out: Record<string, HeaderValue> = {};
    if (this.stored) for (const [key, [, value]] of this.stored) out[key] = value;
    return out;
  }

  /**
   * Builds the head (sent with the first write): the status, headers set before
   * and given here (an object, or a flat name, value… list), and the framing and
   * connection headers the server owns.
   */
  writeHead(statusCode: number, reasonOrHeaders?: string | HeaderInput, headers?: HeaderInput): this {
    if (this.headStart !== undefined || this.headersSent) return this;
    const given = typeof reasonOrHeaders === 'string' || reasonOrHeaders === undefined ? headers : reasonOrHeaders;
    if (typeof reasonOrHeaders === 'string') this.statusMessage = reasonOrHeaders;
    this.statusCode = statusCode;
    let lines = '';
    let length = -1;
    let hasDate = false;
    let closeAsked = false;
    const add = (name: string, value: HeaderValue): void => {
      switch (name.length) {
        case 4:
          if (name.toLowerCase() === 'date') hasDate = true;
          break;
        case 10:
          // The server frames the connection itself; a given `Connection: close` is honoured.
          if (name.toLowerCase() === 'connection') {
            if (String(value).toLowerCase().includes('close')) closeAsked = true;
            return;
          }
          break;
        case 14:
          if (name.toLowerCase() === 'content-length') length = Number(value);
          break;
        case 17:
          if (name.toLowerCase() === 'transfer-encoding') return;
          break;
      }
      lines += headerLines(name, value);
    };
    if (this.stored) {
      for (const [key, [name, value]] of this.stored) {
        if (given && !Array.isArray(given) && Object.keys(given).some((k) => k.toLowerCase() === key)) continue;
        add(name, value);
      }
    }
    if (Array.isArray(given)) {
      for (let i = 0; i < given.length; i += 2) add(given[i] as string, given[i + 1] as HeaderValue);
    } else if (given) {
      for (const name in given) {
        const value = (given as Record<string, HeaderValue | undefined>)[name];
        if (value !== undefined) add(name, value);
      }
    }
    // A Content-Length that is not a number still counts as given (it is written as it is).
    this.finishHead(statusCode, lines, !(length < 0), hasDate, closeAsked);
    return this;
  }

  /**
   * writeHead for a server's answer as the upstream parser read it: its end-to-end lines passed on as the
   * server wrote them (the parser checked every value: no CR, LF or NUL; see ResponseHead.endToEndLines),
   * then `extra` (checked). No header list walked, no string per field. A head whose lines cannot pass
   * as they are (a Connection field naming further fields, a line not in `Name: value` form), or headers
   * set before, take writeHead's way with the list.
   */
  writeUpstreamHead(head: ResponseHead, extra: readonly string[] | undefined): void {
    if (this.headStart !== undefined || this.headersSent) return;
    let lines = head.endToEndLines;
    if (this.stored || lines === undefined) {
      const list = responseHeadersFromRaw(head.headers);
      this.writeHead(head.status, head.reason || undefined, extra ? [...list, ...extra] : list);
      return;
    }
    if (extra) for (let i = 0; i < extra.length; i += 2) lines += headerLines(extra[i] as string, extra[i + 1] as string);
    if (head.reason) this.statusMessage = head.reason;
    this.statusCode = head.status;
    this.finishHead(head.status, lines, head.hasContentLength, head.hasDate, false, head.withStatusLine);
  }

  /** The framing and connection headers the server owns, the Date, and the status line (unless `given` starts with it): the head to send. */
  private finishHead(statusCode: number, given: string, hasLength: boolean, hasDate: boolean, closeAsked: boolean, withStatusLine = false): void {
    let lines = '';
    this.mark(BODYLESS, this.req.method === 'HEAD' || statusCode === 204 || statusCode === 304 || statusCode < 200);
    const http10 = this.req.httpVersionMinor === 0;
    let keepAlive = this.shouldKeepAlive && !closeAsked && this.owner.mayKeepAlive(this);
    if (!hasLength && !this.bodyless && statusCode >= 200) {
      if (http10) keepAlive = false;
      else {
        this.mark(CHUNKED);
        lines += 'transfer-encoding: chunked\r\n';
      }
    }
    if (!this.chunked) this.mark(FRAMED, false);
    if (!keepAlive) lines += 'connection: close\r\n';
    else if (http10) lines += 'connection: keep-alive\r\n';
    if (this.sendDate && !hasDate) lines += `date: ${httpDate()}\r\n`;
    this.mark(KEEP_ALIVE, keepAlive);
    this.headStart = withStatusLine ? given : `HTTP/1.1 ${statusCode} ${this.statusMessage || STATUS_CODES[statusCode] || 'Unknown'}\r\n${given}`;
    this.headEnd = `${lines}\r\n`;
  }

  /** ClientResponse: an HTTP/1.1 client takes a chunked upstream body with its framing as it is. */
  passChunkFraming(): boolean {
    if (this.headStart !== undefined || this.req.httpVersionMinor === 0) return false;
    this.mark(FRAMED);
    return true;
  }

  /** An interim response (100 Continue, 103 Early Hints) before the final one; HTTP/1.0 clients get none. */
  writeInformational(statusCode: number, headers: string[]): void {
    if (this.headersSent || this.destroyed || this.req.httpVersionMinor === 0) return;
    let text = `HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode] ?? 'Informational'}\r\n`;
    for (let i = 0; i < headers.length; i += 2) text += headerLines(headers[i] as string, headers[i + 1] as string);
    this.owner.writer.write(`${text}\r\n`);
  }

  writeContinue(): void {
    this.writeInformational(100, []);
  }

  write(chunk: Uint8Array | string): boolean {
    if (this.writableEnded || this.destroyed) return false;
    if (this.headStart === undefined) this.writeHead(this.statusCode);
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    return this.send(this.bodyless || data.length === 0 ? undefined : data, false);
  }

  /** ClientResponse: write() copies the bytes into the scratch buffer (writeWithHead) or drops them. */
  copiesWrite(length: number): boolean {
    return this.writableEnded || this.destroyed || (!this.headersSent && length <= ONE_WRITE_BODY);
  }

  end(chunk?: Uint8Array | string | (() => void), _encoding?: unknown): this {
    if (this.writableEnded || this.destroyed) return this;
    const data = typeof chunk === 'function' ? undefined : typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    // A whole body given at once gets its Content-Length, as node:http does.
    if (this.headStart === undefined && data && !this.hasHeader('content-length')) this.setHeader('content-length', data.length);
    if (this.headStart === undefined) this.writeHead(this.statusCode);
    this.mark(WRITABLE_ENDED);
    const body = this.bodyless || !data || data.length === 0 ? undefined : data;
    // The usual end of a body written in full: nothing left to send.
    if (this.headersSent && body === undefined && (!this.chunked || this.framed)) this.flushedAfterPendingWrites(false);
    else {
      this.send(body, true);
      this.flushedAfterPendingWrites(true);
    }
    return this;
  }

  /**
   * Tells the connection the response is flushed once the socket has written what it holds (direct
   * writes queued in libuv included: an empty write queues behind them). When it holds nothing that is
   * now: after a write of end()'s own on the next tick, as that write's callback would have been; when
   * end() wrote nothing (the usual end of a body written in full) in this call — an empty write only to
   * learn it costs a syscall per response, and a tick to tell it later a turn of the tick queue.
   */
  private flushedAfterPendingWrites(wrote: boolean): void {
    const writer = this.owner.writer;
    const flushed = this.owner.responseFlushed;
    if (writer.pendingBytes !== 0 || this.socket.destroyed) writer.flushedAfter(flushed);
    else if (wrote) process.nextTick(flushed);
    else flushed();
  }

  /**
   * Sends the head if it is still pending, then `body` — in a chunk of its own when this response adds
   * the chunk framing —, then the last chunk when `last` and it does. A body of at most ONE_WRITE_BODY
   * bytes leaves with the rest in one write; a larger one is written as it is between the rest, in one
   * corked writev. Returns the socket's answer to the last write.
   */
  private send(body: Uint8Array | undefined, last: boolean): boolean {
    const writer = this.owner.writer;
    const frame = this.chunked && !this.framed;
    if (!frame && this.headersSent) return body === undefined || writer.write(body);
    const sizeLine = frame && body !== undefined ? `${body.length.toString(16)}\r\n` : '';
    const after = !frame ? '' : body === undefined ? (last ? LAST_CHUNK : '') : last ? BODY_END_LAST_CHUNK : CRLF;
    if (body === undefined && after.length === 0) {
      if (this.headersSent) return true;
      // A lone head, as one string: copying its two parts as bytes costs a call into C++ more than this write saves.
      this.mark(HEADERS_SENT);
      return writer.write((this.headStart as string) + this.headEnd);
    }
    if (body === undefined || body.length <= ONE_WRITE_BODY) return this.writeWithHead(body, sizeLine, after);
    // The last write's answer counts: when it is false the socket owes a 'drain', which the connection passes on.
    const socket = this.socket;
    writer.flush();
    socket.cork();
    // Something goes before the body here: the head, or the chunk's size line.
    const before = this.pendingHeadLength() + sizeLine.length;
    const buf = scratch.bufferFor(before);
    this.putHead(buf, sizeLine);
    socket.write(scratch.bytesOf(buf, before));
    let ok = socket.write(body);
    if (after.length > 0) ok = socket.write(after, 'latin1');
    socket.uncork();
    // The head's bytes stay referred to by a writev the kernel did not take whole.
    if (writer.referencedBytes !== 0) scratch.retained();
    return ok;
  }

  private pendingHeadLength(): number {
    return this.headersSent ? 0 : (this.headStart as string).length + this.headEnd.length;
  }

  /** Copies what is pending of the head, then `sizeLine`, to the start of `buf`; the head counts as sent from now. */
  private putHead(buf: Buffer, sizeLine: string): void {
    let at = 0;
    if (!this.headersSent) {
      this.mark(HEADERS_SENT);
      at = putLatin1(buf, putLatin1(buf, 0, this.headStart as string), this.headEnd);
    }
    putLatin1(buf, at, sizeLine);
  }

  /**
   * What is pending of the head, `sizeLine`, `body` and `after` in one write, copied into the scratch
   * buffer (kept apart when the socket did not take them whole).
   */
  private writeWithHead(body: Uint8Array | undefined, sizeLine: string, after: string): boolean {
    const bodyLength = body === undefined ? 0 : body.length;
    const at = this.pendingHeadLength() + sizeLine.length;
    const length = at + bodyLength + after.length;
    const buf = scratch.bufferFor(length);
    this.putHead(buf, sizeLine);
    if (body !== undefined) buf.set(body, at);
    if (after.length > 0) putLatin1(buf, at + bodyLength, after);
    // Held for the turn's end (a copy): with the turn's other writes, it wakes the client once (socket-writer.ts).
    const writer = this.owner.writer;
    const ok = writer.writeAtTurnEnd(scratch.bytesOf(buf, length));
    if (writer.referencedBytes !== 0) scratch.retained();
    return ok;
  }

  /** Cuts the client connection: the response can no longer be completed. */
  destroy(_error?: Error): this {
    if (this.destroyed) return this;
    this.mark(DESTROYED);
    if (!this.abandoned) {
      this.owner.writer.flush();
      this.socket.destroy();
    }
    this.emitClose();
    return this;
  }

  /** The server answered in this response's place (a refused body, a timeout): later writes go nowhere. */
  abandon(): void {
    this.mark(DESTROYED | ABANDONED);
  }

  /** The connection flushed the last byte: 'finish', then 'close'. */
  markFlushed(): void {
    this.mark(WRITABLE_FINISHED);
    this.emit('finish');
    this.emitClose();
  }

  emitClose(): void {
    if (this.closed) return;
    this.mark(CLOSED | DESTROYED);
    this.closeWatcher?.responseClosed();
    this.emit('close');
  }
}
