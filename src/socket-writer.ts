/**
 * Socket writes with fewer layers than net.Socket's Writable, for the proxy's two writes per request
 * (the request head to a server, the response to its client). Below src/proxy and src/upstream, so
 * both use it.
 *
 * `socket.write()` goes Writable.write → writeOrBuffer → Socket._write → _writeGeneric → a new WriteWrap
 * (a C++-backed request object) → StreamBase's try-write, then the Writable's completion bookkeeping
 * (afterWrite on the next tick). When the Writable holds nothing (nothing queued, not corked, not
 * ended), handing the bytes to the socket's handle does the very same try-write without the layers
 * above it: ~1.3 µs less user CPU per write (bench/socket-io.ts).
 *
 * That needs what net does not document: the socket's `_handle`, and from `process.binding('stream_wrap')`
 * (src/stream-wrap.ts) the WriteWrap constructor (a write the kernel does not take whole needs one to complete on) and the
 * state array that says whether the last write went async. Both are checked (the binding once, the
 * handle per socket); anything missing, a TLS socket, or VELOCITY_SOCKET_IO=public, and every write is
 * `socket.write()`.
 *
 * A direct write the kernel does not take whole stays queued in libuv: libuv tries no later write
 * while its queue holds one, so any later write, direct or through the Writable, queues behind it
 * (bytes keep their order), and a FIN (socket.end) waits for it. The writer counts such writes:
 * `write` answers false while one is queued (as a full Writable would), `referencedBytes` counts their
 * bytes (a Buffer given to a queued write is referenced until it completes), and `onDrained` is called
 * when the last one completed. A failed write destroys the socket with the errno error, as a failed
 * socket.write() does ('error', then 'close').
 *
 * `writeAtTurnEnd` holds a write until the end of this turn of the event loop (setImmediate: after every
 * I/O callback of the turn), then writes what each writer held in one write. On loopback a write delivers
 * to the receiver and wakes it when it sleeps: a proxy that writes as it goes, each response after the
 * processing of another, wakes wrk or a backend for nearly every response, and on a virtual machine each
 * wake-up (an IPI to the other CPU) is costly. Written together at the turn's end, a turn's writes meet a
 * receiver that is awake already (docs/performance.md has the measurements). Anything written to the socket
 * past this writer (socket.write, end, destroy, a hand-off) must `flush()` first: held bytes go before it.
 * The cost: a response's 'finish' (flushedAfter) comes at the turn's end, so a pipelined request starts a
 * turn later than it did (pipelining clients are rare; browsers and wrk do not pipeline).
 */
import { Buffer } from 'node:buffer';
import { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { streamWrap as binding, type StreamWrapBinding, type WriteRequest } from './stream-wrap.ts';

interface WriteHandle {
  writeLatin1String(req: WriteRequest, data: string): number;
  writeBuffer(req: WriteRequest, data: Uint8Array): number;
}

/** The request object for the next direct write: unused while writes complete at once, replaced when one is queued. */
let spare: WriteRequest | undefined = binding ? new binding.WriteWrap() : undefined;

/** A Buffer's bytes as a latin1 string: a copy the caller's Buffer can be reused after. */
const latin1 = (data: Uint8Array): string => Buffer.prototype.latin1Slice.call(data, 0, data.length);

function writeHandleOf(socket: Socket): WriteHandle | undefined {
  const handle = (socket as unknown as { _handle?: Partial<WriteHandle> | null })._handle;
  if (handle == null || typeof handle.writeLatin1String !== 'function' || typeof handle.writeBuffer !== 'function') return undefined;
  return handle as WriteHandle;
}

/** The error a failed socket.write() gives for the same errno (code, errno, syscall). */
function writeError(status: number): Error {
  let name = `E${-status}`;
  try {
    name = getSystemErrorName(status);
  } catch {
    // Not a known errno: keep the number.
  }
  return Object.assign(new Error(`write ${name}`), { code: name, errno: status, syscall: 'write' });
}

function nothing(): void {}

/** The writers holding bytes for the end of this turn, and whether the turn's flush is scheduled. */
let holding: SocketWriter[] = [];
let flushScheduled = false;

function flushHeld(): void {
  flushScheduled = false;
  // A flush may lead to more held writes (a pipelined request's answer): they wait for the next turn's flush.
  const writers = holding;
  holding = [];
  // A throwing 'finish' listener must not leave the writers after it holding their bytes.
  let failed = false;
  let failure: unknown;
  for (let i = 0; i < writers.length; i++) {
    try {
      (writers[i] as SocketWriter).flushAtTurnEnd();
    } catch (err) {
      if (!failed) failure = err;
      failed = true;
    }
  }
  if (failed) throw failure;
}

export class SocketWriter {
  readonly socket: Socket;
  /** The handle written to directly; undefined: every write goes through socket.write(). */
  private readonly handle: WriteHandle | undefined;
  private readonly onDrained: () => void;
  /** Direct writes the kernel has not taken whole yet, and their bytes. */
  private queued = 0;
  private queuedBytes = 0;
  /** Bytes held for the end of the turn (writeAtTurnEnd), as latin1 text; '' when none. */
  private held = '';
  /** Called once the held bytes were written (flushedAfter); undefined when nobody waits. */
  private afterHeld: (() => void) | undefined;

  /**
   * `direct`: the caller's server or pool allows socket internals (socketInternalsAllowed). Only plain
   * net sockets are written directly (a TLS socket's writes go through its own layer). `onDrained`: the
   * last queued direct write completed (a socket.write() that answered false gets the socket's 'drain').
   */
  constructor(socket: Socket, direct: boolean, onDrained: () => void = nothing) {
    this.socket = socket;
    this.onDrained = onDrained;
    this.handle = direct && binding !== undefined && socket.constructor === Socket ? writeHandleOf(socket) : undefined;
  }

  /** Bytes written and not yet handed to the OS, held ones included. */
  get pendingBytes(): number {
    return this.held.length + this.queuedBytes + this.socket.writableLength;
  }

  /** Bytes of Buffers given to `write` that are still referenced (a held write keeps a copy, never the Buffer). */
  get referencedBytes(): number {
    return this.queuedBytes + this.socket.writableLength;
  }

  /**
   * Writes `data` at the end of this turn (see above), after anything else held for this socket; returns
   * true, as a write the kernel took whole. Its bytes are copied: the caller may reuse a Buffer at once.
   * Not direct, or a write queued: written now, as `write`.
   */
  writeAtTurnEnd(data: Uint8Array | string): boolean {
    if (this.handle === undefined || this.queued !== 0) return this.write(data);
    const text = typeof data === 'string' ? data : latin1(data);
    if (this.held.length === 0) {
      holding.push(this);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushHeld);
      }
    }
    this.held += text;
    return true;
  }

  /** Writes what is held now (before anything else reaches the socket). */
  flush(): void {
    const after = this.writeHeld();
    if (after !== undefined) this.flushedAfter(after);
  }

  /**
   * flush() from the turn's end (flushHeld), where no caller's code is on the stack: the held bytes' `done`
   * (a response's 'finish') is called at once when the kernel took them whole, not on a tick of its own
   * (a TickObject and a run of the tick queue per response). Elsewhere a flush may run inside a write of
   * the response it finishes, which must not see its 'finish' before it returns.
   */
  flushAtTurnEnd(): void {
    const after = this.writeHeld();
    if (after === undefined) return;
    if (this.pendingBytes === 0 && !this.socket.destroyed) after();
    else this.flushedAfter(after);
  }

  /** Writes the held bytes; returns who waits for them to leave (flushedAfter), if anyone. */
  private writeHeld(): (() => void) | undefined {
    const text = this.held;
    if (text.length === 0) return undefined;
    this.held = '';
    const after = this.afterHeld;
    this.afterHeld = undefined;
    if (!this.socket.destroyed) this.write(text);
    return after;
  }

  /**
   * Calls `done` once everything written so far left this process: after the held bytes' flush, after the
   * last queued write (an empty socket write queues behind it), or on the next tick when nothing waits.
   */
  flushedAfter(done: () => void): void {
    if (this.held.length !== 0) {
      const earlier = this.afterHeld;
      this.afterHeld =
        earlier === undefined
          ? done
          : () => {
              earlier();
              done();
            };
      return;
    }
    if (this.pendingBytes !== 0 || this.socket.destroyed) this.socket.write('', done);
    else process.nextTick(done);
  }

  /** Writes `data` (a string as latin1); false: wait for a drain (the socket's, or `onDrained`). */
  write(data: Uint8Array | string): boolean {
    if (this.held.length !== 0) this.flush();
    const socket = this.socket;
    const handle = this.handle;
    if (handle === undefined || socket.writableLength !== 0 || socket.writableCorked !== 0 || socket.writableEnded || socket.destroyed || socket.connecting) {
      return typeof data === 'string' ? socket.write(data, 'latin1') : socket.write(data);
    }
    const req = spare as WriteRequest;
    const status = typeof data === 'string' ? handle.writeLatin1String(req, data) : handle.writeBuffer(req, data);
    if (status !== 0) {
      // As a failed socket.write(): the socket is destroyed with the error ('error' and 'close' come later).
      socket.destroy(writeError(status));
      return false;
    }
    const { streamBaseState, kLastWriteWasAsync, WriteWrap } = binding as StreamWrapBinding;
    if (streamBaseState[kLastWriteWasAsync] === 0) return this.queued === 0;
    // Queued in libuv (a string's bytes were copied; a Buffer is referenced): this request object is that write's now.
    spare = new WriteWrap();
    this.queued++;
    this.queuedBytes += data.length;
    if (typeof data !== 'string') req.buffer = data;
    req.oncomplete = (result: number) => this.completed(result, data.length);
    return false;
  }

  private completed(status: number, bytes: number): void {
    this.queued--;
    this.queuedBytes -= bytes;
    if (status < 0) {
      // A write cancelled by the socket's own destroy finds it destroyed already: nothing happens.
      this.socket.destroy(writeError(status));
      return;
    }
    if (this.queued === 0) this.onDrained();
  }
}
