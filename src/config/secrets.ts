/**
 * The config's secret fields (passwords, tokens, keys), found once from the
 * `secret()` marks in the schema (JSON Schema `writeOnly`), and a copy of a
 * config with them replaced: what reads the config back shows a secret as set,
 * never its value. A field added with `secret()` is redacted with no other change.
 */
import { configJsonSchema } from './json-schema.ts';

type JsonSchema = Record<string, unknown>;
/** Keys from the config's root; `*` stands for any array index or record key. */
export type SecretPath = readonly string[];

const SHOWN = '(set)';

/** The paths of every `writeOnly` field of `schema` (through properties, records, arrays, unions and $refs). */
export function secretPaths(schema: JsonSchema): SecretPath[] {
  const found = new Map<string, SecretPath>();
  const defs = (schema.$defs ?? {}) as Record<string, JsonSchema>;
  const walk = (node: unknown, path: string[], refs: ReadonlySet<string>): void => {
    if (!node || typeof node !== 'object') return;
    const n = node as JsonSchema;
    if (typeof n.$ref === 'string' && !refs.has(n.$ref)) {
      walk(defs[n.$ref.replace('#/$defs/', '')], path, new Set([...refs, n.$ref]));
    }
    if (n.writeOnly === true) {
      found.set(JSON.stringify(path), path);
      return;
    }
    for (const [key, child] of Object.entries((n.properties ?? {}) as Record<string, unknown>)) walk(child, [...path, key], refs);
    if (typeof n.additionalProperties === 'object') walk(n.additionalProperties, [...path, '*'], refs);
    if (n.items) walk(n.items, [...path, '*'], refs);
    for (const key of ['anyOf', 'oneOf', 'allOf'] as const) for (const branch of (n[key] ?? []) as unknown[]) walk(branch, path, refs);
  };
  walk(schema, [], new Set());
  return [...found.values()];
}

let configSecrets: SecretPath[] | undefined;

/** The secret fields of the config schema (derived on first use). */
export function configSecretPaths(): SecretPath[] {
  configSecrets ??= secretPaths(configJsonSchema(''));
  return configSecrets;
}

/** A copy of `value` with a non-empty string at `path` shown as `(set)`; parts not on the path are shared, not copied. */
function redactAt(value: unknown, path: SecretPath, at: number): unknown {
  if (at === path.length) return typeof value === 'string' && value !== '' ? SHOWN : value;
  const key = path[at] as string;
  if (Array.isArray(value)) return key === '*' ? value.map((v) => redactAt(v, path, at + 1)) : value;
  if (!value || typeof value !== 'object') return value;
  const record = value as Record<string, unknown>;
  const keys = key === '*' ? Object.keys(record) : Object.hasOwn(record, key) ? [key] : [];
  if (keys.length === 0) return value;
  const copy = { ...record };
  for (const k of keys) copy[k] = redactAt(record[k], path, at + 1);
  return copy;
}

/** `config` with every secret field replaced by `(set)`. */
export function withoutSecrets<T>(config: T, paths: readonly SecretPath[] = configSecretPaths()): T {
  return paths.reduce<unknown>((value, path) => redactAt(value, path, 0), config) as T;
}
