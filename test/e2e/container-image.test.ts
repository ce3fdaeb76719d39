/**
 * The Dockerfile, built for real on a private Docker engine. No image registry is reachable, so the
 * Node 24 base is made here: a Debian rootfs from `debootstrap --variant=minbase` with the pinned
 * `node` package's binary (and npm for the build stage), `docker import`ed and passed as the
 * NODE_IMAGE build argument. The rootfs tarball is cached in the OS temp folder between runs.
 * The image then runs beside the engine's socket, discovers a labelled container (the demo backend
 * from the same image) and serves through it.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createInternalNetwork, startDockerd } from '../support/docker.ts';
import { serviceUnavailable } from '../support/require-service.ts';
import { mustRun } from '../support/spawn.ts';
import { eventually, get, testAgent } from '../support/velocity.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NODE_VERSION = process.versions.node;
const CACHE = join(tmpdir(), 'velocity-image-cache');
const BASE_TAR = join(CACHE, `base-bookworm-node${NODE_VERSION}.tar`);

/** The Debian mirror apt uses on this machine (debootstrap fetches from it). */
function debianMirror(): string {
  for (const file of ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    const m = /^URIs:\s*(\S+\/debian)\s*$/m.exec(text) ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\s+bookworm/m.exec(text);
    if (m?.[1]) return m[1];
  }
  return 'http://deb.debian.org/debian';
}

/** A minbase Debian rootfs with this Node (the pinned one) and npm, as a tarball; made once and cached. */
async function baseTarball(): Promise<string> {
  if (existsSync(BASE_TAR)) return BASE_TAR;
  mkdirSync(CACHE, { recursive: true });
  const work = mkdtempSync(join(CACHE, 'build-'));
  try {
    const rootfs = join(work, 'rootfs');
    await mustRun('debootstrap', ['--variant=minbase', 'bookworm', rootfs, debianMirror()], { timeoutMs: 900_000 });
    cpSync(realpathSync(process.execPath), join(rootfs, 'usr/local/bin/node'));
    const npmCli = realpathSync((await mustRun('sh', ['-c', 'command -v npm'])).trim());
    const npmDir = dirname(dirname(npmCli));
    cpSync(npmDir, join(rootfs, 'usr/local/lib/node_modules/npm'), { recursive: true });
    symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(rootfs, 'usr/local/bin/npm'));
    rmSync(join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true });
    await mustRun('tar', ['-C', rootfs, '-cf', `${BASE_TAR}.partial`, '.'], { timeoutMs: 300_000 });
    renameSync(`${BASE_TAR}.partial`, BASE_TAR);
    return BASE_TAR;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Where this machine reaches the npm registry through a TLS-inspecting proxy (NODE_EXTRA_CA_CERTS),
 * the base trusts the same extra CA, as the host's npm does; elsewhere the base stays as imported.
 */
async function trustThisMachinesCa(d: NonNullable<Awaited<ReturnType<typeof startDockerd>>>): Promise<void> {
  const ca = process.env.NODE_EXTRA_CA_CERTS;
  if (!ca || !existsSync(ca)) return;
  const dir = mkdtempSync(join(tmpdir(), 'velocity-ca-'));
  try {
    cpSync(ca, join(dir, 'extra-ca.pem'));
    writeFileSync(
      join(dir, 'Dockerfile'),
      'FROM localhost/velocity-node-base:24\nCOPY extra-ca.pem /usr/local/share/extra-ca.pem\nENV NODE_EXTRA_CA_CERTS=/usr/local/share/extra-ca.pem\n',
    );
    await d.docker(['build', '-t', 'localhost/velocity-node-base:24', dir], 300_000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the Dockerfile builds a small non-root image that discovers a labelled container beside the Docker socket and serves through it', { timeout: 900_000 }, async (t) => {
  if (!existsSync('/usr/sbin/debootstrap')) return serviceUnavailable(t, 'debootstrap', 'not installed (apt-get install debootstrap)');
  let base: string;
  try {
    base = await baseTarball();
  } catch (err) {
    return serviceUnavailable(t, 'a Debian base rootfs', (err as Error).message.slice(0, 500));
  }
  const d = await startDockerd(t);
  if (!d) return;
  await d.docker(['import', '-c', 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', base, 'localhost/velocity-node-base:24'], 300_000);
  await trustThisMachinesCa(d);
  // The build stage fetches production dependencies from the npm registry, as anywhere.
  await d.docker(['build', '--network', 'host', '--build-arg', 'NODE_IMAGE=localhost/velocity-node-base:24', '-t', 'localhost/velocity:test', ROOT], 900_000);

  const size = Number((await d.docker(['image', 'inspect', '-f', '{{.Size}}', 'localhost/velocity:test'])).trim());
  const baseSize = Number((await d.docker(['image', 'inspect', '-f', '{{.Size}}', 'localhost/velocity-node-base:24'])).trim());
  t.diagnostic(`image size ${(size / 1e6).toFixed(0)} MB (base ${(baseSize / 1e6).toFixed(0)} MB, Velocity and its dependencies ${((size - baseSize) / 1e6).toFixed(1)} MB)`);
  assert.ok(size - baseSize < 60e6, `Velocity adds ${size - baseSize} bytes to the base`);
  const config = JSON.parse(await d.docker(['image', 'inspect', '-f', '{{json .Config}}', 'localhost/velocity:test']));
  assert.equal(config.User, '10001:10001');
  assert.equal(config.StopSignal, 'SIGTERM');
  assert.match(config.Healthcheck.Test.join(' '), /\/livez/);
  const listing = await d.docker([
    'run',
    '--rm',
    '--network',
    'none',
    '--entrypoint',
    'sh',
    'localhost/velocity:test',
    '-c',
    'ls /opt/velocity; ls /etc/velocity; id -u; ls /root/.npm 2>&1 || true',
  ]);
  assert.deepEqual(listing.split('\n').slice(0, 5), ['bin', 'dashboard', 'dist', 'node_modules', 'package-lock.json']);
  assert.match(listing, /velocity\.yaml/);
  assert.doesNotMatch(listing, /\b(src|test|bench|docs)\b/);

  const network = 'vop23';
  await createInternalNetwork(d, network, '10.202.23.0/24');
  // The demo backend from the same image, labelled for discovery (PORT and DURATION as in the original project).
  await d.docker([
    'run',
    '-d',
    '--name',
    'demo-backend',
    '--network',
    network,
    '-e',
    'PORT=9001',
    '-e',
    'DURATION=0',
    '-l',
    'velocity.service=web',
    '-l',
    'velocity.port=9001',
    'localhost/velocity:test',
    'backend',
    '--name',
    'in-a-container',
  ]);
  // Velocity with its default config, beside the engine's socket.
  const gid = (await mustRun('stat', ['-c', '%g', d.socketPath])).trim();
  await d.docker(['run', '-d', '--name', 'velocity', '--network', network, '-v', `${d.socketPath}:/var/run/docker.sock`, '--group-add', gid, 'localhost/velocity:test']);
  const ip = (await d.docker(['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, 'velocity'])).trim();
  const agent = testAgent(t);
  await eventually(
    async () => {
      const res = await get(agent, `http://${ip}:8000/`).catch(() => undefined);
      return res?.status === 200 && res.body.includes('hello from in-a-container');
    },
    120_000,
    'Velocity in its container serves through the discovered backend container',
    500,
  );
  await eventually(async () => (await d.docker(['inspect', '-f', '{{.State.Health.Status}}', 'velocity'])).trim() === 'healthy', 120_000, 'the HEALTHCHECK on /livez passes', 1000);
  await d.docker(['stop', '-t', '30', 'velocity'], 120_000);
  assert.equal((await d.docker(['inspect', '-f', '{{.State.ExitCode}}', 'velocity'])).trim(), '0', 'SIGTERM stops it cleanly');
});
