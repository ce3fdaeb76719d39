/**
 * What src/socket-writer.ts and src/socket-reader.ts use below net's public API: from
 * `process.binding('stream_wrap')` the WriteWrap constructor and the stream state array (the last
 * write's sync/async outcome, the last read's length or error). Loaded once and checked; undefined
 * when anything is missing (the permission model, a future Node): every socket then keeps net's path.
 */

/** A write request for a handle (WriteWrap): what a queued write completes on. */
export interface WriteRequest {
  oncomplete: ((status: number) => void) | undefined;
  /** Keeps a queued Buffer alive until the kernel took it. */
  buffer: Uint8Array | undefined;
}

export interface StreamWrapBinding {
  WriteWrap: new () => WriteRequest;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
  kReadBytesOrError: number;
}

function load(): StreamWrapBinding | undefined {
  try {
    const binding = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap');
    if (
      typeof binding.WriteWrap === 'function' &&
      binding.streamBaseState instanceof Int32Array &&
      typeof binding.kLastWriteWasAsync === 'number' &&
      typeof binding.kReadBytesOrError === 'number'
    ) {
      return binding as StreamWrapBinding;
    }
  } catch {
    // No process.binding: the public path.
  }
  return undefined;
}

export const streamWrap = load();

/** Whether sockets may be used below net's public API (VELOCITY_SOCKET_IO=public: never). Read when a server starts or a server connection is made. */
export function socketInternalsAllowed(): boolean {
  return process.env.VELOCITY_SOCKET_IO !== 'public';
}
