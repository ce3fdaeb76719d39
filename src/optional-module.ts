/**
 * Packages that only some configs use (an ACME client, etcd, Redis, PostgreSQL,
 * x509, the undici HTTP client …) load when a config first asks for them, not at
 * start: each costs megabytes of resident memory in every process and thread that
 * loads it. They are CommonJS packages, so `require` gives the very module object
 * an `import` would, synchronously (constructors stay synchronous). A package that
 * cannot be loaded is an Error naming the feature that needs it, thrown where the
 * feature is set up (a start or reload refuses the config; nothing crashes).
 */
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const requireHere = createRequire(import.meta.url);

/** A loader of `specifier`: loads it on the first call, then returns the same module. */
export function optionalModule<T>(specifier: string, feature: string): () => T {
  let loaded: T | undefined;
  return () => {
    if (loaded === undefined) {
      try {
        loaded = requireHere(specifier) as T;
      } catch (err) {
        throw new Error(`${feature} needs the package "${specifier}", which could not be loaded: ${(err as Error).message}`, { cause: err });
      }
    }
    return loaded;
  };
}

/**
 * undici, the HTTP client of Velocity's own requests (forward_auth, mirror and error-page
 * subrequests, OTLP export, the Docker API), not of proxied ones. Health checks use node:http's
 * client, which every process has loaded anyway.
 */
export const undiciClient = optionalModule<typeof Undici>('undici', "Velocity's own HTTP requests (forward_auth, mirror, error pages, OTLP export, Docker discovery)");
