/** A server that accepts connections and never answers (a frozen server), closed with its connections after the test. */
import { createServer, type Socket } from 'node:net';
import type { Cleanup } from './velocity.ts';

/** Listens on 127.0.0.1 port 0 and resolves with the port. */
export async function startSilentServer(t: Cleanup): Promise<number> {
  const sockets = new Set<Socket>();
  const silent = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  return (silent.address() as { port: number }).port;
}
