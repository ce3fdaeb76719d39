/**
 * Reads of the HTTP/1.1 server's client sockets into one shared buffer, straight to the connection.
 *
 * By default every read of an accepted socket gets a fresh 64 KiB ArrayBuffer (shrunk to the bytes read)
 * and goes through Readable.push and a 'data' emit. net's `onread` option (read into a buffer of ours, a
 * callback per read) skips both, but Node offers it only to sockets it builds for connect(): an accepted
 * socket is built by net.Server. So the accepted socket is rebuilt here around its handle with `onread`
 * — measured ~1.8 µs less user CPU per read (one per request). Everything a connection keeps of a read
 * past the callback (pipelined bytes, a partial head, body chunks, the bytes after an upgrade's head)
 * is copied out (`owned`), since the next read of any socket overwrites the buffer. Reads that bring
 * bytes then go from the handle straight to the connection (src/socket-reader.ts).
 *
 * This needs two things net does not document: the `_handle` of an accepted socket and the `handle`
 * option of `new Socket()` (how net.Server builds its own). They are checked once per socket
 * (`adoptReads` returns undefined when anything is missing: the socket keeps the stream path), and
 * VELOCITY_SOCKET_IO=public turns the whole path off (socketInternalsAllowed in src/stream-wrap.ts: the
 * escape hatch if a Node upgrade misbehaves, and how the tests run the public path too).
 */
import { Buffer } from 'node:buffer';
import { Socket } from 'node:net';
import { readDirectly } from '../../socket-reader.ts';

/** What is used of a stream handle (tcp_wrap's TCP): reading on and off, and reads into a buffer of ours. */
interface StreamHandle {
  readStart(): number;
  readStop(): number;
  useUserBuffer(buffer: Uint8Array): void;
}

/** One read's worth, as net's default read size. */
const READ_SIZE = 64 * 1024;
/** Every adopted socket reads into this buffer; its bytes are valid only during the read's callback. */
const shared = Buffer.allocUnsafeSlow(READ_SIZE);

/** A copy of `bytes` when they lie in the shared read buffer (the next read overwrites them); else `bytes`. */
export function owned(bytes: Buffer): Buffer {
  if (bytes.buffer !== shared.buffer) return bytes;
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  copy.set(bytes);
  return copy;
}

function handleOf(socket: Socket): StreamHandle | undefined {
  const handle = (socket as unknown as { _handle?: Partial<StreamHandle> | null })._handle;
  if (handle == null || typeof handle.readStart !== 'function' || typeof handle.readStop !== 'function' || typeof handle.useUserBuffer !== 'function') return undefined;
  return handle as StreamHandle;
}

/** Where an adopted socket's reads go: to the connection, or (once it let go) into the socket's Readable as usual. */
class ReadRoute {
  /** false: stop reading (what a full Readable answers on the stream path). */
  private target: (buf: Buffer, length: number) => unknown;
  /** Gives the socket's reads back to net (undefined: they go through net). */
  private throughNet: (() => void) | undefined;

  constructor(target: (buf: Buffer, length: number) => void) {
    this.target = target;
  }

  /** Reads that bring bytes go from the socket's handle straight to the target, past net (src/socket-reader.ts). */
  direct(socket: Socket): void {
    const target = this.target;
    this.throughNet = readDirectly(socket, (length) => {
      target(shared, length);
      return undefined;
    });
  }

  /** net's onread callback (reads that do not come directly): the shared buffer itself, no view made per read. */
  readonly onRead = (length: number, buffer: Uint8Array): boolean => this.target(buffer as Buffer, length) !== false;

  toStream(socket: Socket): void {
    // Through net's onStreamRead again: the Readable's backpressure, and the timeout a tunnel sets.
    this.throughNet?.();
    this.throughNet = undefined;
    this.target = (buf, length) => socket.push(owned(buf.subarray(0, length)));
  }
}

const routes = new WeakMap<Socket, ReadRoute>();

/**
 * A socket on the same connection whose reads go to `target` (the shared buffer and the length read into
 * it, valid during the call); undefined when `socket` cannot be rebuilt (TLS, already read from, no usable handle). The
 * original socket stays, handle-less, until the new one closes: net.Server counts it (maxConnections,
 * close()).
 */
export function adoptReads(socket: Socket, target: (buf: Buffer, length: number) => void): Socket | undefined {
  if (socket.constructor !== Socket || socket.bytesRead !== 0 || socket.readableLength !== 0 || socket.listenerCount('data') !== 0) return undefined;
  const handle = handleOf(socket);
  if (handle === undefined || socket.destroyed || socket.connecting) return undefined;
  const route = new ReadRoute(target);
  const adopted = new Socket({
    handle,
    allowHalfOpen: socket.allowHalfOpen,
    readable: true,
    writable: true,
    readableHighWaterMark: socket.readableHighWaterMark,
    writableHighWaterMark: socket.writableHighWaterMark,
    onread: { buffer: shared, callback: route.onRead },
  } as unknown as ConstructorParameters<typeof Socket>[0]);
  route.direct(adopted);
  routes.set(adopted, route);
  (socket as unknown as { _handle: unknown })._handle = null;
  adopted.once('close', () => socket.destroy());
  return adopted;
}

/** The connection lets go of an adopted socket (a WebSocket hand-off): its reads go through 'data' and pipe() again. */
export function releaseReads(socket: Socket): void {
  routes.get(socket)?.toStream(socket);
}
