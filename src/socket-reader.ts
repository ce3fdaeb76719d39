/**
 * Socket reads with fewer layers than net's, for the proxy's two reads per request (the request from
 * a client, the response from a server). Both sockets already read into buffers of ours (net's `onread`
 * option: src/proxy/http1/socket-io.ts, src/upstream/http1-connection.ts); below src/proxy and
 * src/upstream, so both use it.
 *
 * Per read, the handle calls its `onread` function (net's onStreamRead) with the read's length in the
 * stream state array. For a read that brought bytes, onStreamRead finds the socket (owner symbol),
 * refreshes its timeout, checks it is not destroyed, calls the `onread` callback with net's buffer, asks
 * the buffer function for the next buffer and keeps it. A function of ours in the handle's `onread`
 * hands such a read straight to its reader, which knows its buffer and answers the next one; the end
 * of the stream and read errors (length ≤ 0) still go to onStreamRead, so 'end', 'error', half-close
 * and destroy behave as before. What the skipped steps did, and why nothing is lost:
 * - The timeout refresh: a socket with a timeout set (`socket.timeout`, the public property
 *   setTimeout sets) has every read go through onStreamRead again.
 * - The destroyed check: net's destroy replaces the handle's `onread` with a no-op when it closes the
 *   handle, so no read reaches ours after it.
 * - Stopping reads when the callback answers false: these readers pause their socket themselves.
 *
 * Needs what net does not document: the socket's `_handle` and its `onread` property, and the stream
 * state from `process.binding('stream_wrap')` (src/stream-wrap.ts). Checked once per socket; anything
 * missing, a TLS socket (its reads go through TLSWrap), or VELOCITY_SOCKET_IO=public (the caller's
 * choice), and every read goes through net as before.
 */
import { Socket } from 'node:net';
import { streamWrap } from './stream-wrap.ts';

/** What the handle calls per read; the read's length (or error) is in the stream state array. */
type OnRead = (this: unknown, arrayBuffer: unknown) => unknown;

/**
 * Reads of `socket` (made with net's `onread` option) that brought bytes go to `onBytes(length)`:
 * `length` bytes are at the start of the buffer the read went into; it answers the buffer for the
 * next read, or undefined to keep the same. Returns what gives the reads back to net (a stream that
 * needs its Readable, or a timeout, again); undefined when the socket cannot read this way.
 */
export function readDirectly(socket: Socket, onBytes: (length: number) => Uint8Array | undefined): (() => void) | undefined {
  const handle = (socket as unknown as { _handle?: { onread?: unknown } | null })._handle;
  if (streamWrap === undefined || socket.constructor !== Socket || handle == null) return undefined;
  const streamRead = handle.onread;
  if (typeof streamRead !== 'function') return undefined;
  const { streamBaseState, kReadBytesOrError } = streamWrap;
  handle.onread = function onRead(this: unknown, arrayBuffer: unknown): unknown {
    const length = streamBaseState[kReadBytesOrError] as number;
    if (length > 0 && !socket.timeout) return onBytes(length);
    return (streamRead as OnRead).call(this, arrayBuffer);
  };
  return () => {
    if ((socket as unknown as { _handle: unknown })._handle === handle) handle.onread = streamRead;
  };
}
