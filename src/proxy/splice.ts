/**
 * Two sockets joined both ways (a WebSocket or TCP tunnel): bytes flow with
 * backpressure, a half-close is passed on, silence in both directions for
 * `idleMs` ends it, and the pair is torn down exactly once.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export function splice(client: Duplex, upstream: Socket, idleMs: number, onClosed: () => void): void {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    client.destroy();
    upstream.destroy();
    onClosed();
  };
  // Socket timeouts count reads and writes, so the client side alone sees traffic both ways.
  (client as Socket).setTimeout?.(idleMs, close);
  (client as Socket).setNoDelay?.(true);
  upstream.setNoDelay(true);
  upstream.setTimeout(0);
  client.on('error', close);
  upstream.on('error', close);
  // pipe() ends the other side on a half-close; the pair goes when both sides are done.
  client.once('close', close);
  upstream.once('close', close);
  upstream.pipe(client);
  client.pipe(upstream);
}
