/**
 * Closing an HTTP/1.1 listener without resetting a request. `http.Server.close()` also cuts
 * every idle keep-alive connection at once — racing a client that is sending its next request
 * on one, which then sees a reset. Here the listener stops accepting, connections in use get
 * `Connection: close` with their current response (the data plane is draining), and idle ones
 * are closed only once they have been idle a while, so a busy client is never cut mid-send.
 */
import type { Server } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';

/** How long a keep-alive connection must sit idle before shutdown closes it. */
const IDLE_BEFORE_CLOSE_MS = 1_000;

/** Follows which connections carry a request now (0) or since when they are idle. */
export function trackConnectionUse(server: Server): Map<Socket, number> {
  const idleSince = new Map<Socket, number>();
  server.on('request', (req, res) => {
    if (req.httpVersionMajor !== 1) return; // HTTP/2 sessions are closed with GOAWAY (http2.ts)
    const socket = req.socket;
    if (!idleSince.has(socket)) socket.once('close', () => idleSince.delete(socket));
    idleSince.set(socket, 0);
    res.once('close', () => {
      if (idleSince.has(socket)) idleSince.set(socket, Date.now());
    });
  });
  return idleSince;
}

/** Stops accepting, closes connections once idle a while, and cuts the rest at the deadline. */
export function closeGracefully(server: Server, idleSince: Map<Socket, number>, deadline: number): Promise<void> {
  return new Promise<void>((resolve) => {
    NetServer.prototype.close.call(server, () => resolve());
    const sweep = setInterval(() => {
      const now = Date.now();
      for (const [socket, since] of idleSince) if (since !== 0 && now - since >= IDLE_BEFORE_CLOSE_MS) socket.destroy();
    }, 100);
    const cut = setTimeout(() => server.closeAllConnections(), Math.max(0, deadline - Date.now()));
    server.once('close', () => {
      clearInterval(sweep);
      clearTimeout(cut);
    });
  });
}
