/**
 * Helpers for the dashboard tests: a TCP forwarder in front of the admin
 * listener whose connections the test can cut (to drop the live stream the way
 * a network or restart would), and raw requests whose paths hold markup.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { TestContext } from 'node:test';

export interface Forwarder {
  port: number;
  /** Destroys every open connection and refuses new ones until resume(). */
  cut(): void;
  /** How many connections were refused since the last cut(). */
  readonly refused: number;
  resume(): void;
}

export async function startForwarder(t: Pick<TestContext, 'after'>, targetPort: number): Promise<Forwarder> {
  const open = new Set<Socket>();
  let refusing = false;
  let refused = 0;
  const server: Server = createServer((client) => {
    if (refusing) {
      refused++;
      return client.destroy();
    }
    const upstream = connect(targetPort, '127.0.0.1');
    open.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  );
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    get refused() {
      return refused;
    },
    cut() {
      refusing = true;
      refused = 0;
      for (const s of open) s.destroy();
      open.clear();
    },
    resume() {
      refusing = false;
    },
  };
}

/** Sends one HTTP/1.1 request with `path` exactly as given (no URL encoding) and resolves with the status. */
export function rawGet(port: number, path: string, host = 'localhost'): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    let text = '';
    socket.on('data', (d) => {
      text += d.toString();
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
  });
}
