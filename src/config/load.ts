/**
 * YAML text → validated, frozen Config. Every problem is reported with its file,
 * line and column, the field path, and what was expected.
 */
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, stringify, visit } from 'yaml';
import type { z } from 'zod';
import { ConfigError, type ConfigProblem } from '../errors.ts';
import { REQUEST_PLACEHOLDERS } from '../middleware/head.ts';
import { suggest } from '../suggest.ts';
import { EtcdConfigStore } from './etcd-source.ts';
import { isLegacyConfig, translateLegacy } from './legacy.ts';
import { checkPolicyModules } from './policy-modules.ts';
import { shadowedRoutes } from './route-checks.ts';
import { configSourceSchema, type EtcdSourceConfig } from './schema/fleet.ts';
import { type Config, configSchema, defaultsSchema, duplicateNames } from './schema/root.ts';

export interface LoadedConfig {
  config: Config;
  /** Where a field path sits in the file (for errors found after validation). */
  locate?: (path: PropertyKey[], message: string) => ConfigProblem;
  /** Set when the file was in the Go Velocity format: the same config in the current format. */
  legacyTranslation?: string;
  /** Problems that do not stop the config (a route an earlier one shadows). */
  warnings?: ConfigProblem[];
  /** In a fleet: the etcd revision of the shared config it was built from (0: none pushed yet). */
  revision?: number;
}

type Path = PropertyKey[];

/**
 * Reads and validates a config file. Throws ConfigError with every problem found. A file with
 * `config_source: { etcd }` is one instance's part of a fleet: the shared config is read from
 * etcd (through `store` when given, else a client of its own) and the file's keys go over it.
 */
export async function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env, store?: EtcdConfigStore): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message;
    throw new ConfigError([{ file, line: 1, column: 1, path: '', message: `cannot read config: ${reason}` }]);
  }
  const source = configSourceOf(text, file, env);
  const loaded = source ? await loadLayered(text, file, env, source, store) : parseConfig(text, file, env);
  await checkPolicyModules(loaded, dirname(file)).catch((err: unknown) => {
    throw refusedAt(err, loaded.revision);
  });
  return loaded;
}

/** A config error of a fleet's shared config says which revision was refused. */
function refusedAt(err: unknown, revision: number | undefined): unknown {
  return err instanceof ConfigError && revision !== undefined ? new ConfigError(err.problems, { revision }) : err;
}

/** The etcd source a config text names, validated; undefined when it names none. */
export function configSourceOf(text: string, file: string, env: NodeJS.ProcessEnv = process.env): EtcdSourceConfig | undefined {
  const read = readConfigText(text, file, env);
  const section = isPlainObject(read.raw) ? read.raw.config_source : undefined;
  if (section === undefined) return undefined;
  const result = configSourceSchema.safeParse(section, { reportInput: true });
  if (!result.success) throw new ConfigError(dedupe(issuesToProblems(result.error.issues, ['config_source'], read.locate)));
  return result.data.etcd;
}

async function loadLayered(text: string, file: string, env: NodeJS.ProcessEnv, source: EtcdSourceConfig, given: EtcdConfigStore | undefined): Promise<LoadedConfig> {
  let store = given;
  let read: Awaited<ReturnType<EtcdConfigStore['readShared']>>;
  try {
    store ??= new EtcdConfigStore(source, dirname(file));
    read = await store.readShared();
  } catch (err) {
    const where = readConfigText(text, file, env).locate(['config_source', 'etcd', 'endpoints'], '');
    throw new ConfigError([
      { ...where, message: `cannot read the shared config at ${source.prefix}/config from etcd (${source.endpoints.join(', ')}): ${(err as Error).message}` },
    ]);
  } finally {
    if (!given) store?.close();
  }
  // Nothing pushed yet: the file alone, if it is a whole config; else say what is missing.
  if (!read.shared) {
    try {
      return { ...parseConfig(text, file, env), revision: 0 };
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      const where = readConfigText(text, file, env).locate(['config_source', 'etcd', 'prefix'], '');
      throw new ConfigError([
        ...err.problems,
        { ...where, message: `nothing at ${source.prefix}/config in etcd yet: push the shared config with \`velocity config push FILE --etcd …\`` },
      ]);
    }
  }
  const { revision } = read.shared;
  try {
    return { ...parseLayeredConfig(read.shared, { text, file }, env), revision };
  } catch (err) {
    throw refusedAt(err, revision);
  }
}

/**
 * A candidate shared config under this instance's local file, validated as a reload would
 * (policy and middleware modules are loaded by the reload itself); throws ConfigError.
 */
export async function checkSharedCandidate(text: string, store: EtcdConfigStore, file: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  parseLayeredConfig({ text, file: `etcd:${store.configKey}` }, { text: await readFile(file, 'utf8'), file }, env);
}

/** Validates config text; `file` is only used in error positions. */
export function parseConfig(text: string, file = '<config>', env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const read = readConfigText(text, file, env);
  return validateConfig(read.raw, read.locate, read.legacyTranslation);
}

/** One config text read as YAML: its value, and where a field path sits in it. */
interface ReadConfig {
  raw: unknown;
  locate: (path: Path, message: string, keyOf?: string) => ConfigProblem;
  legacyTranslation?: string;
}

/**
 * A fleet's config: the shared document (from etcd) under the instance's local file, whose
 * top-level keys (listen, admin, workers, config_source…) win. Each problem points into the
 * text its field came from.
 */
export function parseLayeredConfig(shared: { text: string; file: string }, local: { text: string; file: string }, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const base = readConfigText(shared.text, shared.file, env);
  const over = readConfigText(local.text, local.file, env);
  // A document that is not a mapping fails validation on its own, with its own position.
  if (!isPlainObject(base.raw)) return validateConfig(base.raw, base.locate);
  const localRaw = over.raw;
  if (!isPlainObject(localRaw)) return validateConfig(localRaw, over.locate);
  if (base.raw.config_source !== undefined)
    throw new ConfigError([base.locate(['config_source'], 'config_source belongs in each instance’s own file, not in the shared config', 'config_source')]);
  return validateConfig({ ...base.raw, ...localRaw }, (path, message, keyOf) => (String(path[0]) in localRaw ? over : base).locate(path, message, keyOf));
}

function readConfigText(text: string, file: string, env: NodeJS.ProcessEnv): ReadConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number, path: string, message: string): ConfigProblem => {
    const pos = lineCounter.linePos(offset);
    return { file, line: pos.line, column: pos.col, path, message };
  };

  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => at(e.pos[0], '', `not valid YAML: ${e.message.split('\n')[0]}`)));
  }

  const problems: ConfigProblem[] = [];
  substituteEnv(doc.contents, env, (offset, message) => problems.push(at(offset, '', message)));
  if (problems.length > 0) throw new ConfigError(problems);

  let raw: unknown;
  try {
    raw = doc.toJS();
  } catch (err) {
    // An alias to an anchor not yet defined, or too many aliases (a "billion laughs" file), fails only here.
    throw new ConfigError([at(0, '', `not valid YAML: ${(err as Error).message}`)]);
  }
  if (raw === null || raw === undefined) raw = {};
  let pathMap = (p: Path): Path => p;
  let legacyTranslation: string | undefined;
  if (isLegacyConfig(raw)) {
    const translated = translateLegacy(raw);
    raw = translated.config;
    pathMap = translated.pathMap;
    legacyTranslation = stringify(raw);
  }

  const locate = (path: Path, message: string, keyOf?: string): ConfigProblem => {
    const docPath = pathMap(path);
    const node = nearestNode(doc.contents, docPath, keyOf);
    const shown = formatPath(path);
    return at(node?.range?.[0] ?? 0, shown, message);
  };
  return { raw, locate, ...(legacyTranslation ? { legacyTranslation } : {}) };
}

function validateConfig(raw: unknown, locate: ReadConfig['locate'], legacyTranslation?: string): LoadedConfig {
  const problems: ConfigProblem[] = [];
  // `defaults` is checked on its own so its mistakes point at it, then merged under each service.
  if (raw && typeof raw === 'object' && !Array.isArray(raw)) {
    const obj = raw as Record<string, unknown>;
    if (obj.defaults !== undefined) {
      const result = defaultsSchema.safeParse(obj.defaults, { reportInput: true });
      if (!result.success) problems.push(...issuesToProblems(result.error.issues, ['defaults'], locate));
      else if (Array.isArray(obj.services) && isPlainObject(obj.defaults)) {
        obj.services = obj.services.map((s) => (isPlainObject(s) ? deepMerge(obj.defaults as Record<string, unknown>, s) : s));
      }
    }
  }

  const result = configSchema.safeParse(raw, { reportInput: true });
  if (!result.success) problems.push(...issuesToProblems(result.error.issues, [], locate));
  for (const dup of duplicateNames(raw)) problems.push(locate(dup.path, dup.message));
  if (problems.length > 0 || !result.success) throw new ConfigError(dedupe(problems));
  const warnings = shadowedRoutes(result.data.services).map((w) => locate(w.path, w.message));
  return { config: deepFreeze(result.data), locate: (path, message) => locate(path, message), warnings, ...(legacyTranslation ? { legacyTranslation } : {}) };
}

function issuesToProblems(issues: readonly z.core.$ZodIssue[], prefix: Path, locate: (path: Path, message: string, keyOf?: string) => ConfigProblem): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeys(prefix.length ? defaultsSchema : configSchema, issue.path);
      for (const key of issue.keys) {
        const hint = suggest(key, known);
        const expected = known.length ? `; expected one of ${known.join(', ')}` : '';
        out.push(locate([...path, key], `unknown field "${key}"${hint ? ` (did you mean "${hint}"?)` : expected}`, key));
      }
      continue;
    }
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      // Report the alternative that got furthest: the one whose issues sit deepest.
      const best = issue.errors.reduce((a, b) => (depth(b) > depth(a) ? b : a));
      if (depth(best) > 0) {
        out.push(...issuesToProblems(best, path, locate));
        continue;
      }
    }
    // Issues carry their input (safeParse with reportInput): only an absent value is "missing"; a present one is named.
    const message = issue.message.replace(/^Invalid input: /, '');
    if (issue.code === 'invalid_type' || issue.code === 'invalid_union') {
      const input = (issue as { input?: unknown }).input;
      out.push(locate(path, input === undefined ? `required field is missing (${message})` : `${message}; got ${describeValue(input)}`));
    } else out.push(locate(path, message));
  }
  return out;
}

/** A YAML value as a user would name it in an error message. */
function describeValue(value: unknown): string {
  if (value === null) return 'an empty value (null)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the text ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return `the ${typeof value} ${String(value)}`;
}

const depth = (issues: readonly z.core.$ZodIssue[]): number => Math.max(0, ...issues.map((i) => i.path.length + (i.code === 'invalid_type' ? 0 : 0.5)));

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.line}:${p.column}:${p.path}:${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function formatPath(path: Path): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

/** The YAML node at `path`, or the closest ancestor that exists (for missing fields). */
function nearestNode(root: Node | null, path: Path, keyOf?: string): Node | undefined {
  let node: Node | null | undefined = root;
  let last: Node | undefined = root ?? undefined;
  for (let i = 0; i < path.length; i++) {
    const step = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === step);
      if (!pair) return last;
      if (keyOf !== undefined && i === path.length - 1) return pair.key as Node;
      node = pair.value as Node | null;
      last = (node ?? (pair.key as Node)) as Node;
    } else if (isSeq(node) && typeof step === 'number') {
      node = node.items[step] as Node | undefined;
      if (!node) return last;
      last = node;
    } else return last;
  }
  return last;
}

/** `${VAR}` and `${VAR:-default}` inside string values; a missing VAR without default is an error. */
function substituteEnv(root: Node | null, env: NodeJS.ProcessEnv, report: (offset: number, message: string) => void): void {
  if (!root) return;
  visit(root, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return;
      node.value = node.value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (whole, name: string, fallback: string | undefined) => {
        const value = env[name];
        if (value !== undefined && value !== '') return value;
        // ${client_ip}, ${request_id}, ${host}… are request values for middleware, filled per request.
        if (fallback === undefined && (REQUEST_PLACEHOLDERS as readonly string[]).includes(name)) return whole;
        if (fallback !== undefined) return fallback;
        report(node.range?.[0] ?? 0, `environment variable ${name} is not set (write \${${name}:-default} for a default)`);
        return '';
      });
    },
  });
}

/** Field names an object schema accepts at `path`, for "did you mean" hints. */
function knownKeys(schema: z.ZodType, path: Path): string[] {
  type Def = Record<string, unknown> & { type?: string };
  const defOf = (s: unknown) => (s as { _zod?: { def?: Def } })?._zod?.def;
  // The concrete schemas a schema may be: wrappers unwrapped, every option of a union
  // (so a union of objects, such as the listener types, offers all their fields).
  const expand = (s: unknown, depth = 0): unknown[] => {
    const def = defOf(s);
    if (!def || depth > 20) return [];
    if (def.type === 'union') return (def.options as unknown[]).flatMap((o) => expand(o, depth + 1));
    if (def.type === 'object' || def.type === 'array') return [s];
    if (def.innerType) return expand(def.innerType, depth + 1);
    if (def.type === 'pipe') return expand(def.in, depth + 1);
    return [s];
  };
  let current: unknown[] = [schema];
  for (const step of path) {
    current = current
      .flatMap((c) => expand(c))
      .flatMap((s) => {
        const def = defOf(s) as Def;
        if (def.type === 'object' && typeof step === 'string') return step in (def.shape as object) ? [(def.shape as Record<string, unknown>)[step]] : [];
        if (def.type === 'array') return [def.element];
        return [];
      });
  }
  const keys = current.flatMap((c) => expand(c)).flatMap((s) => (defOf(s)?.type === 'object' ? Object.keys(defOf(s)?.shape as object) : []));
  return [...new Set(keys)];
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
