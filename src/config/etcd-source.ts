/**
 * The shared config of a fleet, kept as one YAML document at PREFIX/config in etcd.
 * Every write is a compare-and-swap on the key's revision, so two writers never
 * overwrite each other's change: the loser reads again and retries.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type * as Etcd3Module from 'etcd3';
import type { Etcd3, IOptions } from 'etcd3';
import { optionalModule } from '../optional-module.ts';
import type { EtcdSourceConfig } from './schema/fleet.ts';

/** The etcd client package, loaded when a config first names an etcd cluster. */
export const etcd3 = optionalModule<typeof Etcd3Module>('etcd3', 'etcd (config_source, acme storage)');

/** How long one etcd call may take before it counts as a failure (the client then tries another member). */
const CALL_TIMEOUT_MS = 3_000;

export interface SharedConfig {
  text: string;
  /** The etcd revision at which the key last changed (its mod_revision). */
  revision: number;
  /** The name errors point at, `etcd:PREFIX/config`. */
  file: string;
}

export class EtcdConfigStore {
  readonly client: Etcd3;
  readonly prefix: string;
  readonly endpoints: readonly string[];

  /** `baseDir` is where relative TLS file paths resolve (the local config file's folder). */
  constructor(source: EtcdSourceConfig, baseDir: string) {
    this.prefix = source.prefix;
    this.endpoints = source.endpoints;
    const options: IOptions = {
      hosts: [...source.endpoints],
      dialTimeout: CALL_TIMEOUT_MS,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
    };
    if (source.tls) {
      const read = (file: string) => readFileSync(resolve(baseDir, file));
      options.credentials = {
        rootCertificate: read(source.tls.ca),
        ...(source.tls.cert && source.tls.key ? { certChain: read(source.tls.cert), privateKey: read(source.tls.key) } : {}),
      };
    }
    if (source.auth) options.auth = { username: source.auth.username, password: source.auth.password };
    this.client = new (etcd3().Etcd3)(options);
  }

  /** A key under the fleet's prefix. */
  key(...parts: string[]): string {
    return [this.prefix, ...parts].join('/');
  }

  get configKey(): string {
    return this.key('config');
  }

  /** The shared config, or undefined when none was pushed yet; with the cluster revision it was read at. */
  async readShared(): Promise<{ shared: SharedConfig | undefined; readAt: number }> {
    const res = await this.client.get(this.configKey).exec();
    const kv = res.kvs[0];
    const readAt = Number(res.header.revision);
    if (!kv) return { shared: undefined, readAt };
    return { shared: { text: kv.value.toString('utf8'), revision: Number(kv.mod_revision), file: `etcd:${this.configKey}` }, readAt };
  }

  /**
   * Writes the shared config if it still is at `expected` (its revision when read; 0 = absent).
   * Answers the new revision, or undefined when someone else changed it first.
   */
  async writeShared(text: string, expected: number): Promise<number | undefined> {
    const res = await this.client.if(this.configKey, 'Mod', '==', expected).then(this.client.put(this.configKey).value(text)).commit();
    return res.succeeded ? Number(res.header.revision) : undefined;
  }

  close(): void {
    this.client.close();
  }
}
