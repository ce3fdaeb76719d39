#!/usr/bin/env node
/** `velocity start | validate | proxy | init | schema | backend | bench`: a thin layer over the library. */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { backendCommand } from './backend/command.ts';
import { EtcdConfigStore } from './config/etcd-source.ts';
import { configJsonSchema } from './config/json-schema.ts';
import { type LoadedConfig, loadConfigFile, parseConfig } from './config/load.ts';
import { etcdSourceSchema } from './config/schema/fleet.ts';
import { proxyConfig, SCHEMA_FILE_NAME, starterConfig } from './config/starter.ts';
import { ConfigError, formatProblem } from './errors.ts';
import { createLogger } from './observe/logger.ts';
import { start } from './runtime/instance.ts';
import { installSignalHandlers } from './runtime/signals.ts';
import { type Handover, takeOver } from './runtime/takeover.ts';
import { limitYoungGeneration } from './runtime/young-generation.ts';
import { VERSION } from './version.ts';

const USAGE = `usage:
  velocity start [--config FILE] [--pid-file FILE] [--takeover]
                                          run the load balancer (default ./velocity.yaml); --takeover
                                          listens beside the Velocity named by --pid-file, then has it drain
  velocity validate --config FILE         check a config file; exit 1 with every problem
  velocity config push FILE --etcd HOST:PORT[,…] [--prefix /velocity] [--user NAME[:PASSWORD]]
                                          validate FILE and make it a fleet's shared config in etcd
  velocity config pull --etcd HOST:PORT[,…] [--prefix /velocity] [--user NAME[:PASSWORD]] [--output FILE]
                                          the fleet's shared config (with the admin API's changes)
                  [--cacert FILE [--cert FILE --key FILE]]
                                          etcd over TLS (as etcdctl): the CA to trust, a client certificate
  velocity proxy --from :8000 --to HOST:PORT [--to …] [--policy NAME] [--health PATH]
                 [--admin ADDR|off] [--print-config]
                                          a reverse proxy from flags, no file (--print-config: the same as YAML)
  velocity init [--config FILE] [--force] write a commented starter config and its JSON Schema
  velocity schema [--output FILE]         the config's JSON Schema, for editors
  velocity --version
  velocity backend --port N [--name NAME] [--delay MS]
                                          a demo/test backend server
  velocity bench [--quick]                compare with nginx, HAProxy, node-http-proxy`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  try {
    return await run(command, rest);
  } catch (err) {
    // A flag the command does not know, or one missing its value: say which, not a stack trace.
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`velocity ${command}: ${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    throw err;
  }
}

async function run(command: string | undefined, rest: string[]): Promise<number> {
  switch (command) {
    case 'start':
      return startCommand(rest);
    case 'validate':
      return validateCommand(rest);
    case 'config':
      return fleetConfigCommand(rest);
    case 'backend':
      return backendCommand(rest);
    case 'bench':
      return benchCommand(rest);
    case 'proxy':
      return proxyCommand(rest);
    case 'init':
      return initCommand(rest);
    case 'schema':
      return schemaCommand(rest);
    case '-v':
    case '--version':
    case 'version':
      console.log(VERSION);
      return 0;
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      console.error(`velocity: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

async function startCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { config: { type: 'string', short: 'c', default: 'velocity.yaml' }, 'pid-file': { type: 'string' }, takeover: { type: 'boolean', default: false } },
  });
  const file = values.config as string;
  const pidFile = values['pid-file'];
  if (values.takeover && !pidFile) {
    console.error('velocity start: --takeover needs --pid-file FILE (where the running Velocity wrote its PID)');
    return 2;
  }
  return runConfig(() => loadConfigFile(file), file, pidFile ? { pidFile, takeover: values.takeover } : undefined);
}

/** Loads a config (refusing a bad one with every problem) and runs Velocity on it until a signal stops it. */
async function runConfig(load: () => Promise<LoadedConfig> | LoadedConfig, file: string | undefined, handover?: Handover): Promise<number> {
  // A server's process: restarted in place with a small young generation (see young-generation.ts).
  limitYoungGeneration();
  const log = createLogger();
  let loaded: LoadedConfig;
  try {
    loaded = await load();
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) console.error(formatProblem(p));
      console.error(`velocity: ${file ?? 'the flags'} ha${file ? 's' : 've'} ${err.problems.length} problem(s); not starting`);
      return 1;
    }
    throw err;
  }
  for (const w of loaded.warnings ?? []) log.warn(`warning: ${formatProblem(w)}`);
  if (loaded.legacyTranslation) {
    log.warn({ file }, `this config is in the old Velocity format and was translated; the same config in the current format is:\n${loaded.legacyTranslation}`);
  }
  try {
    const velocity = await start(loaded.config, { logger: log, sharePorts: handover?.takeover ?? false, ...(file ? { configFile: file } : {}) });
    installSignalHandlers(velocity, log);
    if (handover) takeOver(handover, log);
  } catch (err) {
    console.error(`velocity: ${(err as Error).message}`);
    return 1;
  }
  return -1; // keep running
}

async function proxyCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      from: { type: 'string', multiple: true, default: [] },
      to: { type: 'string', multiple: true, default: [] },
      policy: { type: 'string' },
      health: { type: 'string' },
      admin: { type: 'string' },
      'print-config': { type: 'boolean', default: false },
    },
  });
  if (values.to.length === 0) {
    console.error(`velocity proxy: give at least one --to HOST:PORT\n${USAGE}`);
    return 2;
  }
  const yaml = proxyConfig({ from: values.from, to: values.to, policy: values.policy, health: values.health, admin: values.admin });
  if (values['print-config']) {
    process.stdout.write(yaml);
    return 0;
  }
  // The flags become the file --print-config shows, so an error points at the same line there.
  return runConfig(() => parseConfig(yaml, '(velocity proxy --print-config)'), undefined);
}

async function initCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c', default: 'velocity.yaml' }, force: { type: 'boolean', default: false } } });
  const file = values.config as string;
  const schemaFile = join(dirname(file), SCHEMA_FILE_NAME);
  const existing = [file, schemaFile].filter((f) => existsSync(f));
  if (existing.length > 0 && !values.force) {
    console.error(`velocity init: ${existing.join(' and ')} already exist${existing.length === 1 ? 's' : ''}; not overwriting (--force to replace)`);
    return 1;
  }
  writeFileSync(file, starterConfig());
  writeFileSync(schemaFile, `${JSON.stringify(configJsonSchema(VERSION), null, 2)}\n`);
  console.log(`wrote ${file} and ${schemaFile}\n  check: velocity validate --config ${file}\n  run:   velocity start --config ${file}`);
  return 0;
}

async function schemaCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { output: { type: 'string', short: 'o' } } });
  const text = `${JSON.stringify(configJsonSchema(VERSION), null, 2)}\n`;
  if (values.output) writeFileSync(values.output, text);
  else process.stdout.write(text);
  return 0;
}

async function validateCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c', default: 'velocity.yaml' } } });
  const file = values.config as string;
  try {
    const { config, legacyTranslation, warnings } = await loadConfigFile(file);
    for (const w of warnings ?? []) console.error(`warning: ${formatProblem(w)}`);
    const servers = config.services.reduce((n, s) => n + s.servers.length, 0);
    console.log(
      `${file}: ok — ${config.services.length} service(s), ${servers} server(s), listening on ${[...config.listen.map((a) => `${a.host}:${a.port}`), ...config.listeners.map((l) => `${l.listen.host}:${l.listen.port} (${l.type})`), ...config.services.flatMap((s) => (s.listen ? [`${s.listen.host}:${s.listen.port} (tcp ${s.name})`] : []))].join(', ')}${legacyTranslation ? ' (old Velocity format, translated)' : ''}`,
    );
    return 0;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) console.error(formatProblem(p));
    return 1;
  }
}

/** `config push FILE` / `config pull`: move a fleet's shared config in and out of etcd. */
async function fleetConfigCommand(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      etcd: { type: 'string' },
      prefix: { type: 'string', default: '/velocity' },
      user: { type: 'string' },
      output: { type: 'string', short: 'o' },
      cacert: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
    },
  });
  if ((action !== 'push' && action !== 'pull') || !values.etcd || (action === 'push') !== (positionals.length === 1)) {
    console.error(`velocity config: expected push FILE --etcd … or pull --etcd …\n${USAGE}`);
    return 2;
  }
  // --user NAME:PASSWORD as etcdctl takes it; ETCD_PASSWORD keeps the password out of the process list.
  const [username, password = process.env.ETCD_PASSWORD ?? ''] = values.user?.split(/:(.*)/s) ?? [];
  // As etcdctl: any TLS flag makes a bare HOST:PORT an https:// endpoint.
  const tls = values.cacert || values.cert || values.key ? { ca: values.cacert, cert: values.cert, key: values.key } : undefined;
  if (tls && !tls.ca) {
    // The shared config is only read from an etcd whose certificate verifies against a CA named here.
    console.error("velocity config: --cert and --key need --cacert FILE (the CA that signed etcd's certificate)");
    return 2;
  }
  const endpoints = values.etcd.split(',').map((e) => (tls && !/^\w+:\/\//.test(e) ? `https://${e}` : e));
  const parsed = etcdSourceSchema.safeParse({ endpoints, prefix: values.prefix, ...(tls ? { tls } : {}), ...(username ? { auth: { username, password } } : {}) });
  if (!parsed.success) {
    console.error(`velocity config: ${parsed.error.issues.map((i) => `${flagOf(i.path)}: ${i.message}`).join('; ')}`);
    return 2;
  }
  let store: EtcdConfigStore;
  try {
    store = new EtcdConfigStore(parsed.data, process.cwd());
  } catch (err) {
    // A --cacert, --cert or --key file that cannot be read.
    console.error(`velocity config ${action}: ${(err as Error).message}`);
    return 2;
  }
  try {
    return action === 'push' ? await pushConfig(store, positionals[0] as string) : await pullConfig(store, values.output);
  } catch (err) {
    console.error(`velocity config ${action}: etcd (${parsed.data.endpoints.join(', ')}): ${(err as Error).message}`);
    return 1;
  } finally {
    store.close();
  }
}

/** The flag a problem of the etcd source built from `velocity config` flags comes from. */
function flagOf(path: PropertyKey[]): string {
  if (path[0] === 'prefix') return '--prefix';
  if (path[0] !== 'tls') return '--etcd';
  if (path[1] === 'ca') return '--cacert';
  return path[1] === undefined ? '--cert/--key' : `--${String(path[1])}`;
}

async function pushConfig(store: EtcdConfigStore, file: string): Promise<number> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
    parseConfig(text, file);
  } catch (err) {
    if (err instanceof ConfigError) for (const p of err.problems) console.error(formatProblem(p));
    else console.error(`velocity config push: ${(err as Error).message}`);
    console.error(`velocity config push: ${file} not pushed`);
    return 1;
  }
  // Compare-and-swap against what was read, so a change made meanwhile (an admin API edit) is not silently lost.
  const { shared } = await store.readShared();
  const revision = await store.writeShared(text, shared?.revision ?? 0);
  if (revision === undefined) {
    console.error(`velocity config push: ${store.configKey} changed while pushing; pull it, merge, and push again`);
    return 1;
  }
  console.log(`pushed ${file} to ${store.configKey} at revision ${revision}${shared ? ` (was ${shared.revision})` : ''}`);
  return 0;
}

async function pullConfig(store: EtcdConfigStore, output: string | undefined): Promise<number> {
  const { shared } = await store.readShared();
  if (!shared) {
    console.error(`velocity config pull: nothing at ${store.configKey}; push a config first`);
    return 1;
  }
  if (output) {
    writeFileSync(output, shared.text);
    console.error(`wrote ${output} from ${store.configKey} at revision ${shared.revision}`);
  } else process.stdout.write(shared.text);
  return 0;
}

async function benchCommand(args: string[]): Promise<number> {
  const script = fileURLToPath(new URL('../bench/run.ts', import.meta.url));
  const child = spawn(process.execPath, [script, ...args], { stdio: 'inherit' });
  return new Promise((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    console.error('velocity: fatal:', err);
    process.exitCode = 1;
  },
);
