/**
 * A private Docker engine for one test file: its own socket, data and exec roots
 * and containerd namespace, stopped by PID at the end. Images are built locally
 * from a busybox rootfs with `docker import` (no registry is reachable).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Agent, request } from 'undici';
import { serviceUnavailable } from './require-service.ts';
import { mustRun, runCommand, sleep } from './spawn.ts';

export interface Dockerd {
  socketPath: string;
  host: string;
  readonly pid: number | undefined;
  /** The docker CLI against this engine. */
  docker(args: string[], timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
  start(): Promise<void>;
}

async function pinged(socketPath: string): Promise<boolean> {
  const agent = new Agent({ connect: { socketPath } });
  try {
    const res = await request('http://docker/_ping', { dispatcher: agent, headersTimeout: 1000 });
    return (await res.body.text()) === 'OK';
  } catch {
    return false;
  } finally {
    await agent.close();
  }
}

export async function startDockerd(t: TestContext): Promise<Dockerd | undefined> {
  if (!existsSync('/usr/bin/dockerd') && !existsSync('/usr/sbin/dockerd')) {
    serviceUnavailable(t, 'dockerd', 'not installed (apt-get install docker.io)');
    return undefined;
  }
  // Short path: unix socket paths are limited to ~100 bytes.
  const root = mkdtempSync('/tmp/vd-');
  const socketPath = join(root, 'docker.sock');
  const ns = `vtest${process.pid}`;
  let child: ChildProcess | undefined;
  let log = '';
  let starts = 0;
  const start = async () => {
    // A fresh exec root per start: a stopped engine's containerd shims may linger on the old one.
    const execRoot = join(root, `exec${starts++}`);
    const proc = spawn(
      'dockerd',
      [
        '--host',
        `unix://${socketPath}`,
        '--data-root',
        join(root, 'data'),
        '--exec-root',
        execRoot,
        '--pidfile',
        join(root, 'dockerd.pid'),
        '--containerd-namespace',
        ns,
        '--containerd-plugins-namespace',
        `${ns}-plugins`,
        '--ip-forward=false',
        '--bridge=none',
        // Containers get 1 s to stop when the engine shuts down (busybox httpd as PID 1 ignores SIGTERM).
        '--shutdown-timeout=1',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc.stdout?.on('data', (d) => {
      log = (log + d).slice(-4000);
    });
    proc.stderr?.on('data', (d) => {
      log = (log + d).slice(-4000);
    });
    child = proc;
    for (let i = 0; i < 150; i++) {
      if (await pinged(socketPath)) return;
      if (proc.exitCode !== null) throw new Error(`dockerd exited ${proc.exitCode}: ${log.slice(-600)}`);
      await sleep(100);
    }
    throw new Error(`dockerd did not answer /_ping within 15 s: ${log.slice(-600)}`);
  };
  const stop = async () => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  const docker = (args: string[], timeoutMs = 60_000) => mustRun('docker', ['-H', `unix://${socketPath}`, ...args], { timeoutMs });
  try {
    await start();
  } catch (err) {
    await stop();
    await cleanUpRoot(root);
    serviceUnavailable(t, 'dockerd', (err as Error).message);
    return undefined;
  }
  t.after(async () => {
    // Containers and networks go first: a network's bridge outlives a stopped engine. A client whose own
    // cleanup comes later (an autoscaler in the test's in-process Velocity keeping its minimum) may start a
    // container meanwhile, and a network with one attached is not removed: clear both again, a few times.
    if (child?.exitCode !== null) await start().catch(() => undefined);
    for (let attempt = 0; attempt < 5; attempt++) {
      const ids = (await docker(['ps', '-aq']).catch(() => '')).split('\n').filter(Boolean);
      if (ids.length > 0) await docker(['rm', '-f', ...ids]).catch(() => undefined);
      const networks = (await docker(['network', 'ls', '-q', '--filter', 'type=custom']).catch(() => '')).split('\n').filter(Boolean);
      if (networks.length === 0) break;
      const removed = await docker(['network', 'rm', ...networks]).then(
        () => true,
        () => false,
      );
      if (removed) break;
      await sleep(500);
    }
    await stop();
    await cleanUpRoot(root);
  });
  return {
    socketPath,
    host: `unix://${socketPath}`,
    get pid() {
      return child?.pid;
    },
    docker,
    stop,
    start,
  };
}

/**
 * Podman's Docker-compatible API service (`podman system service`) with its own
 * storage, run root and socket; the docker CLI and Velocity talk to it as to Docker.
 */
export async function startPodman(t: TestContext): Promise<Dockerd | undefined> {
  if (!existsSync('/usr/bin/podman')) {
    serviceUnavailable(t, 'podman', 'not installed (apt-get install podman runc)');
    return undefined;
  }
  const root = mkdtempSync('/tmp/vp-');
  const socketPath = join(root, 'podman.sock');
  const conf = join(root, 'containers.conf');
  writeFileSync(conf, '[engine]\nruntime = "runc"\n[containers]\ndefault_ulimits = ["nofile=20000:20000","nproc=32768:32768"]\n');
  const podman = (args: string[]) => mustRun('podman', ['--root', join(root, 'storage'), '--runroot', join(root, 'run'), ...args], { env: { CONTAINERS_CONF: conf } });
  let child: ChildProcess | undefined;
  const start = async () => {
    const proc = spawn('podman', ['--root', join(root, 'storage'), '--runroot', join(root, 'run'), 'system', 'service', '--time=0', `unix://${socketPath}`], {
      stdio: 'ignore',
      env: { ...process.env, CONTAINERS_CONF: conf },
    });
    child = proc;
    for (let i = 0; i < 100; i++) {
      if (await pinged(socketPath)) return;
      if (proc.exitCode !== null) throw new Error(`podman system service exited ${proc.exitCode}`);
      await sleep(100);
    }
    throw new Error('podman system service did not answer /_ping within 10 s');
  };
  const stop = async () => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
  };
  try {
    await start();
  } catch (err) {
    await stop();
    rmSync(root, { recursive: true, force: true });
    serviceUnavailable(t, 'podman', (err as Error).message);
    return undefined;
  }
  t.after(async () => {
    await podman(['rm', '-f', '-a']).catch(() => undefined);
    await podman(['network', 'prune', '-f']).catch(() => undefined);
    await stop();
    await cleanUpRoot(root);
  });
  return {
    socketPath,
    host: `unix://${socketPath}`,
    get pid() {
      return child?.pid;
    },
    docker: (args, timeoutMs = 60_000) => mustRun('docker', ['-H', `unix://${socketPath}`, ...args], { timeoutMs }),
    stop,
    start,
  };
}

/** Ends the containers and containerd shims this engine left (ours, found by our root path), unmounts, removes. */
async function cleanUpRoot(root: string): Promise<void> {
  // A shim is the parent of its container's first process: killing the shim alone leaves that process
  // running, adopted by init (a container the engine lost track of, e.g. across a restart on a new exec
  // root). Its children first, then the shims.
  const shims = (await runCommand('pgrep', ['-f', `containerd-shim.*${root}/`])).stdout.split('\n').filter(Boolean);
  if (shims.length > 0) await runCommand('pkill', ['-KILL', '-P', shims.join(',')]);
  await runCommand('pkill', ['-KILL', '-f', `containerd-shim.*${root}/`]);
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await runCommand('umount', ['-l', m]);
  rmSync(root, { recursive: true, force: true });
}

/**
 * An image whose container runs busybox httpd on 8080 serving /www: `/` and
 * `/health` answer 200, `/cgi-bin/name` prints the container's hostname.
 */
export async function buildBusyboxImage(d: Dockerd, tag: string): Promise<void> {
  const dir = mkdtempSync('/tmp/vimg-');
  try {
    const rootfs = join(dir, 'rootfs');
    for (const sub of ['bin', 'www/cgi-bin', 'tmp', 'etc']) mkdirSync(join(rootfs, sub), { recursive: true });
    copyFileSync('/bin/busybox', join(rootfs, 'bin/busybox'));
    for (const tool of ['sh', 'httpd', 'hostname', 'cat', 'echo', 'sleep']) symlinkSync('busybox', join(rootfs, 'bin', tool));
    writeFileSync(join(rootfs, 'www/index.html'), 'hello from a container\n');
    writeFileSync(join(rootfs, 'www/health'), 'ok\n');
    writeFileSync(join(rootfs, 'www/cgi-bin/name'), '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\nhostname\n');
    chmodSync(join(rootfs, 'www/cgi-bin/name'), 0o755);
    await mustRun('tar', ['-C', rootfs, '-cf', join(dir, 'rootfs.tar'), '.']);
    await d.docker(['import', '-c', 'CMD ["/bin/httpd","-f","-p","8080","-h","/www"]', join(dir, 'rootfs.tar'), tag]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function createInternalNetwork(d: Dockerd, name: string, subnet: string): Promise<void> {
  // A bridge left by an engine of an earlier, interrupted run would shadow the new network's route.
  const gateway = subnet.replace(/\.0\/\d+$/, '.1/');
  const links = await runCommand('ip', ['-br', 'addr']);
  for (const line of links.stdout.split('\n')) {
    const [iface] = line.split(/\s+/);
    if (iface?.startsWith('br-') && line.includes(` ${gateway}`)) await runCommand('ip', ['link', 'del', iface]);
  }
  await d.docker(['network', 'create', '--internal', '--subnet', subnet, name]);
}

export async function runContainer(d: Dockerd, options: { name: string; image: string; network: string; labels: Record<string, string> }): Promise<string> {
  const labels = Object.entries(options.labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
  return (await d.docker(['run', '-d', '--name', options.name, '--network', options.network, ...labels, options.image])).trim();
}

export async function containerIp(d: Dockerd, id: string, network: string): Promise<string> {
  return (await d.docker(['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, id])).trim();
}
