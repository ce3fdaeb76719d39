/**
 * `npm start`: three demo backends on 9001-9003 and Velocity on 8000 with
 * examples/quickstart.yaml, all stopped together with Ctrl-C.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const config = fileURLToPath(new URL('./quickstart.yaml', import.meta.url));
const children: ChildProcess[] = [];

for (const [i, port] of [9001, 9002, 9003].entries()) {
  children.push(spawn(process.execPath, [cli, 'backend', '--port', String(port), '--name', `backend-${i + 1}`], { stdio: 'inherit' }));
}
const velocity = spawn(process.execPath, [cli, 'start', '--config', config], { stdio: 'inherit' });
children.push(velocity);
console.log('quick start: try  curl -s localhost:8000/  a few times (Ctrl-C stops everything)');

const stop = () => {
  for (const child of children) child.kill('SIGTERM');
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
velocity.on('exit', (code) => {
  stop();
  process.exitCode = code ?? 0;
});
