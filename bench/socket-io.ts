/**
 * The socket I/O paths of src/socket-reader.ts and src/socket-writer.ts against net's, in one process,
 * alternated per round (a whole-proxy A/B hardly sees a 1–2 µs change on a shared machine): user CPU
 * per read that goes through net's onStreamRead vs straight from the handle, for accepted sockets read
 * into the shared buffer (src/proxy/http1/socket-io.ts) and for connected ones with a buffer function
 * (src/upstream/http1-connection.ts); and per write of a response-sized latin1 string and Buffer
 * (socket.write vs SocketWriter's direct write).
 *
 *   node bench/socket-io.ts [--rounds 12] [--count 20000] [--only reads|writes]
 *
 * Reads: peer processes keep 20 sockets of each way busy, each sending a 200-byte message whenever it
 * gets a 1-byte answer (written directly, the same for both ways).
 * Writes: 20 writes per loop turn to a peer process that reads and drops.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { adoptReads } from '../src/proxy/http1/socket-io.ts';
import { readDirectly } from '../src/socket-reader.ts';
import { SocketWriter } from '../src/socket-writer.ts';

const { values: args } = parseArgs({
  options: { rounds: { type: 'string', default: '12' }, count: { type: 'string', default: '20000' }, only: { type: 'string' } },
});
const rounds = Number(args.rounds);
const count = Number(args.count);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/** A child process running `code` (which prints its port, or connects to the one given as argv[1]). */
async function peer(code: string, port?: number): Promise<{ port: number; stop: () => void }> {
  const child = spawn(process.execPath, ['-e', code, String(port ?? 0)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  return { port: Number(String(line)), stop: () => child.kill() };
}

function userNs(start: NodeJS.CpuUsage, ops: number): number {
  return (process.cpuUsage(start).user * 1000) / ops;
}

/**
 * `measure` (user ns per operation) for the old and the new way, alternated round by round (which goes
 * first too); prints their medians and new ÷ old per round.
 */
async function alternated(what: string, names: [string, string], measure: (fresh: boolean) => Promise<number>): Promise<void> {
  const ratios: number[] = [];
  const per: [number[], number[]] = [[], []];
  for (let round = 0; round < rounds; round++) {
    const ns = [0, 0];
    for (const fresh of round % 2 === 0 ? [false, true] : [true, false]) {
      const i = fresh ? 1 : 0;
      ns[i] = await measure(fresh);
      per[i].push(ns[i] as number);
    }
    ratios.push((ns[1] as number) / (ns[0] as number));
  }
  console.log(
    `${what}: ${names[0]} ${median(per[0]).toFixed(0)} ns user, ${names[1]} ${median(per[1]).toFixed(0)} ns; ${names[1]} ÷ ${names[0]} per round median ${median(ratios).toFixed(3)} (${ratios.map((r) => r.toFixed(2)).join(' ')})`,
  );
}

/** Sockets of one kind read two ways: through net's onStreamRead, and straight from the handle (src/socket-reader.ts). */
interface ReadSets {
  net: Socket[];
  direct: Socket[];
}

/** Each socket of `sets` answers a read with a 1-byte write (direct: the same cost for both ways); user ns per read, alternated. */
async function pingPong(what: string, sets: ReadSets, onMessage: { call: (socket: Socket) => void }): Promise<void> {
  const ack = 'a';
  const writers = new Map([...sets.net, ...sets.direct].map((s) => [s, new SocketWriter(s, true)]));
  await alternated(what, ['through net', 'direct'], async (fresh) => {
    let n = 0;
    const done = new Promise<void>((resolve) => {
      onMessage.call = (socket) => {
        if (++n === count) resolve();
        if (n < count) writers.get(socket)?.write(ack);
      };
    });
    const start = process.cpuUsage();
    for (const s of sets[fresh ? 'direct' : 'net']) writers.get(s)?.write(ack);
    await done;
    const ns = userNs(start, count);
    // Let the last answers in flight arrive before the next round.
    onMessage.call = () => undefined;
    await new Promise((r) => setTimeout(r, 50));
    return ns;
  });
}

/** net's onStreamRead, as a socket's handle has it before anything of ours. */
function netOnRead(socket: Socket): unknown {
  return (socket as unknown as { _handle: { onread: unknown } })._handle.onread;
}

const SOCKETS = 20;
/** A peer answering each byte it gets with a 200-byte message, on `port` (connect) or on a port it prints (listen). */
const ANSWER = `const m=Buffer.alloc(200,120);const a=(s)=>{s.setNoDelay(true);s.on('data',()=>s.write(m))};`;

async function reads(): Promise<void> {
  const hooks: { call: (socket: Socket) => void } = { call: () => undefined };
  // Accepted sockets (the client side): rebuilt for shared-buffer reads (socket-io.ts), half of them given net's onStreamRead back.
  const accepted: ReadSets = { net: [], direct: [] };
  let onStreamRead: unknown;
  const server = createServer({ noDelay: true }, (socket) => {
    onStreamRead ??= netOnRead(socket);
    const adopted = adoptReads(socket, () => hooks.call(adopted as Socket));
    if (!adopted) throw new Error('shared-buffer reads are not available on this Node');
    const set = accepted.net.length < SOCKETS ? accepted.net : accepted.direct;
    if (set === accepted.net) (adopted as unknown as { _handle: { onread: unknown } })._handle.onread = onStreamRead;
    set.push(adopted);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const clients = await peer(
    `${ANSWER}const p=+process.argv[1];let open=0;for(let i=0;i<${2 * SOCKETS};i++){const s=require('net').connect(p,'127.0.0.1');a(s);s.on('connect',()=>{if(++open===${2 * SOCKETS})console.log(p)})}`,
    port,
  );
  while (accepted.direct.length < SOCKETS) await new Promise((r) => setTimeout(r, 10));
  await pingPong('accepted socket reads, shared buffer (+1 direct write each)', accepted, hooks);
  // Connected sockets (the server side): net's onread option with a buffer function, as src/upstream/http1-connection.ts.
  const answers = await peer(`${ANSWER}require('net').createServer(a).listen(0,'127.0.0.1',function(){console.log(this.address().port)})`);
  const connected: ReadSets = { net: [], direct: [] };
  for (let i = 0; i < 2 * SOCKETS; i++) {
    const buffer = Buffer.allocUnsafeSlow(16 * 1024);
    const socket: Socket = connect({
      host: '127.0.0.1',
      port: answers.port,
      noDelay: true,
      onread: {
        buffer: () => buffer,
        callback: () => {
          hooks.call(socket);
          return true;
        },
      },
    });
    await once(socket, 'connect');
    if (i < SOCKETS) connected.net.push(socket);
    else {
      const direct = readDirectly(socket, () => {
        hooks.call(socket);
        return buffer;
      });
      if (!direct) throw new Error('direct reads are not available on this Node');
      connected.direct.push(socket);
    }
  }
  await pingPong('connected socket reads, onread buffer function (+1 direct write each)', connected, hooks);
  for (const s of [...accepted.net, ...accepted.direct, ...connected.net, ...connected.direct]) s.destroy();
  clients.stop();
  answers.stop();
  server.close();
}

async function writes(): Promise<void> {
  const sink = await peer(`require('net').createServer(s=>s.on('data',()=>{})).listen(0,'127.0.0.1',function(){console.log(this.address().port)})`);
  const socket = connect(sink.port, '127.0.0.1');
  await once(socket, 'connect');
  socket.setNoDelay(true);
  const head = `HTTP/1.1 200 OK\r\ncontent-length: 19\r\ncontent-type: text/plain\r\ndate: ${new Date().toUTCString()}\r\n\r\nhello from backend\n`;
  const buffer = Buffer.from(head, 'latin1');
  const writers = [new SocketWriter(socket, false), new SocketWriter(socket, true)];
  for (const data of [head, buffer]) {
    await alternated(`writes (${typeof data === 'string' ? 'latin1 string' : 'Buffer'}, ${data.length} bytes)`, ['socket.write', 'direct'], async (fresh) => {
      const writer = writers[fresh ? 1 : 0] as SocketWriter;
      const start = process.cpuUsage();
      for (let i = 0; i < count; i += 20) {
        for (let k = 0; k < 20; k++) writer.write(data);
        await new Promise((r) => setImmediate(r));
      }
      const ns = userNs(start, count);
      while (writer.pendingBytes > 0) await new Promise((r) => setTimeout(r, 5));
      return ns;
    });
  }
  socket.destroy();
  sink.stop();
}

if (args.only !== 'writes') await reads();
if (args.only !== 'reads') await writes();
