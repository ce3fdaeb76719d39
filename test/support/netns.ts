/**
 * Other hosts for tests: network namespaces on a private bridge, with a blackhole
 * route for the whole lab range so nothing can leave the machine. Needs root.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { TestContext } from 'node:test';
import { serviceUnavailable } from './require-service.ts';
import { mustRun, runCommand } from './spawn.ts';

export interface LabHost {
  name: string;
  ip: string;
  /** Runs a command inside the host's namespace. */
  run(cmd: string, args: string[]): ChildProcess;
  /** Cuts the host's link: packets to it vanish (timeouts, not refusals). */
  linkDown(): Promise<void>;
  linkUp(): Promise<void>;
}

const LAB_RANGE = '10.200.0.0/16';

export async function createHosts(t: TestContext, count: number): Promise<LabHost[] | undefined> {
  if (process.getuid?.() !== 0) {
    serviceUnavailable(t, 'network namespaces', 'tests of other hosts need root (ip netns)');
    return undefined;
  }
  const id = Math.floor(Math.random() * 200) + 20;
  const tag = `${process.pid % 10000}${id}`;
  const bridge = `vbr${tag}`.slice(0, 15);
  const subnet = `10.200.${id}`;
  const created: string[] = [];
  let addedBlackhole = false;
  const teardown = async () => {
    for (const ns of created) await runCommand('ip', ['netns', 'del', ns]);
    await runCommand('ip', ['link', 'del', bridge]);
    if (addedBlackhole) await runCommand('ip', ['route', 'del', 'blackhole', LAB_RANGE]);
  };
  try {
    const routes = await mustRun('ip', ['route', 'show', 'type', 'blackhole']);
    if (!routes.includes(LAB_RANGE)) {
      await mustRun('ip', ['route', 'add', 'blackhole', LAB_RANGE]);
      addedBlackhole = true;
    }
    await mustRun('ip', ['link', 'add', bridge, 'type', 'bridge']);
    await mustRun('ip', ['addr', 'add', `${subnet}.1/24`, 'dev', bridge]);
    await mustRun('ip', ['link', 'set', bridge, 'up']);
    const hosts: LabHost[] = [];
    for (let i = 0; i < count; i++) {
      const name = `vh${tag}${i}`;
      const veth = `vv${tag}${i}`.slice(0, 15);
      const ip = `${subnet}.${11 + i}`;
      await mustRun('ip', ['netns', 'add', name]);
      created.push(name);
      await mustRun('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
      await mustRun('ip', ['link', 'set', veth, 'master', bridge, 'up']);
      await mustRun('ip', ['-n', name, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      await mustRun('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
      await mustRun('ip', ['-n', name, 'link', 'set', 'eth0', 'up']);
      hosts.push({
        name,
        ip,
        run: (cmd, args) => spawn('ip', ['netns', 'exec', name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }),
        linkDown: async () => void (await mustRun('ip', ['link', 'set', veth, 'down'])),
        linkUp: async () => void (await mustRun('ip', ['link', 'set', veth, 'up'])),
      });
    }
    t.after(teardown);
    return hosts;
  } catch (err) {
    await teardown();
    serviceUnavailable(t, 'network namespaces', (err as Error).message);
    return undefined;
  }
}
