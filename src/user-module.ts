/**
 * An operator's own module named in the config — a custom policy, a custom middleware: resolved
 * against the config file's folder, imported (TypeScript or JavaScript), its factory the default
 * export or a named one. Each kind checks what its factory makes; this only finds the factory.
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** A kind of user module, as its errors name it. */
export interface UserModuleKind {
  /** "policy", "middleware". */
  readonly noun: string;
  /** The named export that serves when there is no default one: "createPolicy". */
  readonly exportName: string;
  /** The factory's signature as an operator would write it, for the error that says one is missing. */
  readonly signature: string;
}

/** The module's path: `specifier` as it is when absolute, else against the config file's folder. */
export function userModulePath(specifier: string, baseDir: string): string {
  return isAbsolute(specifier) ? specifier : resolve(baseDir, specifier);
}

/** Imports the module at `path` and returns its factory; throws an Error saying what is wrong. */
export async function importFactory<Factory>(path: string, kind: UserModuleKind): Promise<Factory> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`cannot load ${kind.noun} module ${path}: ${(err as Error).message.split('\n')[0]}`);
  }
  const candidate = mod.default ?? mod[kind.exportName];
  if (typeof candidate !== 'function') throw new Error(`${kind.noun} module ${path} must export a factory function as default (or ${kind.exportName}): ${kind.signature}`);
  return candidate as Factory;
}
