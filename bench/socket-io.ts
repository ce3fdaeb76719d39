/**
 * The socket I/O paths of src/proxy/http1/socket-io.ts and src/socket-writer.ts against net's public
 * ones, in one process, alternated per round (a whole-proxy A/B hardly sees a 1–2 µs change on a
 * shared machine): user CPU per read of an accepted socket ('data' vs shared-buffer reads) and per
 * write of a response-sized latin1 string and Buffer (socket.write vs SocketWriter's direct write).
 *
 *   node bench/socket-io.ts [--rounds 12] [--count 20000] [--only reads|writes]
 *
 * Reads: a peer process keeps 20 connections of each kind busy, each sending a 200-byte message whenever it
 * gets a 1-byte answer; one server here accepts both sets, reads one as net gives it and adopts the other.
 * Writes: 20 writes per loop turn to a peer process that reads and drops.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { adoptReads } from '../src/proxy/http1/socket-io.ts';
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

async function reads(): Promise<void> {
  const sets: Record<'stream' | 'shared', Socket[]> = { stream: [], shared: [] };
  let onMessage: () => void = () => undefined;
  const ack = Buffer.from('a');
  let accepting: 'stream' | 'shared' = 'stream';
  const server = createServer({ noDelay: true }, (socket) => {
    const set = sets[accepting];
    if (accepting === 'shared') {
      const adopted = adoptReads(socket, () => onMessage.call(adopted));
      if (!adopted) throw new Error('shared-buffer reads are not available on this Node');
      set.push(adopted);
    } else {
      socket.on('data', function (this: Socket) {
        onMessage.call(this);
      });
      set.push(socket);
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const peers: { stop: () => void }[] = [];
  for (const kind of ['stream', 'shared'] as const) {
    accepting = kind;
    peers.push(
      await peer(
        `const m=Buffer.alloc(200,120);const p=+process.argv[1];let open=0;for(let i=0;i<20;i++){const s=require('net').connect(p,'127.0.0.1');s.setNoDelay(true);s.on('data',()=>s.write(m));s.on('connect',()=>{if(++open===20)console.log(p)})}`,
        port,
      ),
    );
    while (sets[kind].length < 20) await new Promise((r) => setTimeout(r, 10));
  }
  await alternated('reads (+1 write each)', ["'data'", 'shared buffer'], async (fresh) => {
    let n = 0;
    const done = new Promise<void>((resolve) => {
      onMessage = function (this: Socket) {
        if (++n === count) resolve();
        if (n < count) this.write(ack);
      };
    });
    const start = process.cpuUsage();
    for (const s of sets[fresh ? 'shared' : 'stream']) s.write(ack);
    await done;
    const ns = userNs(start, count);
    // Let the last answers in flight arrive before the next round.
    onMessage = () => undefined;
    await new Promise((r) => setTimeout(r, 50));
    return ns;
  });
  for (const p of peers) p.stop();
  for (const s of [...sets.stream, ...sets.shared]) s.destroy();
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
