/**
 * Changes to a fleet's shared config (servers added, removed, re-weighted through any
 * instance's admin API) written as compare-and-swap on the config key's revision. Edits
 * that arrive while a write is under way go into the next write together; a write that
 * lost the race reads the config again and re-applies its edits, so none is lost.
 */
import { isMap, isScalar, isSeq, parseDocument, type YAMLMap, type YAMLSeq } from 'yaml';
import { cappedBackoff } from '../backoff.ts';
import type { EtcdConfigStore, SharedConfig } from '../config/etcd-source.ts';
import type { ServerConfig } from '../config/schema/service.ts';
import { ConfigError, formatProblem } from '../errors.ts';
import { ServerChangeError, serverIdFor } from '../upstream/control-plane.ts';

type Doc = ReturnType<typeof parseDocument>;

/** One change to the document; throws ServerChangeError when it cannot apply (that edit alone fails). */
export type SharedEdit = (doc: Doc) => void;

interface Pending {
  edit: SharedEdit;
  resolve: (revision: number) => void;
  reject: (err: unknown) => void;
}

/** Attempts per batch before giving up (each one lost a race to another writer). */
const MAX_ATTEMPTS = 50;

/** Validates a candidate shared config as this instance would load it; throws ConfigError. */
export type SharedConfigCheck = (text: string) => Promise<void>;

export class SharedConfigEditor {
  private readonly store: EtcdConfigStore;
  private readonly check: SharedConfigCheck;
  private queue: Pending[] = [];
  private running = false;

  constructor(store: EtcdConfigStore, check: SharedConfigCheck) {
    this.store = store;
    this.check = check;
  }

  /** Applies `edit` to the shared config; resolves with the etcd revision that holds it. */
  apply(edit: SharedEdit): Promise<number> {
    return new Promise((resolve, reject) => {
      this.queue.push({ edit, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      try {
        await this.write(batch);
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    this.running = false;
  }

  private async write(batch: Pending[]): Promise<void> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const { shared } = await this.store.readShared();
      if (!shared) throw new ServerChangeError(409, `no shared config at ${this.store.configKey}: push one with \`velocity config push\``);
      // The batch's result is checked once; when it does not validate, each edit is checked on its own.
      let edited = this.edit(shared, batch);
      const valid = edited.applied.length === 0 || (await this.validate(edited.doc)) === undefined;
      if (!valid) edited = await this.editChecked(shared, batch);
      const { doc, applied, failed } = edited;
      const revision = applied.length > 0 ? await this.store.writeShared(doc.toString(), shared.revision) : shared.revision;
      if (revision === undefined) {
        // Another instance wrote first: read its version and apply these edits to it.
        await new Promise((r) => setTimeout(r, Math.random() * cappedBackoff(5, 200, attempt)));
        continue;
      }
      for (const p of applied) p.resolve(revision);
      for (const { p, err } of failed) p.reject(err);
      return;
    }
    throw new ServerChangeError(409, `the shared config kept changing under ${MAX_ATTEMPTS} attempts; try again`);
  }

  /** The shared document with every edit that applies. */
  private edit(shared: SharedConfig, batch: Pending[]): Edited {
    const edited: Edited = { doc: parseShared(shared), applied: [], failed: [] };
    for (const p of batch) {
      try {
        p.edit(edited.doc);
        edited.applied.push(p);
      } catch (err) {
        edited.failed.push({ p, err });
      }
    }
    return edited;
  }

  /** The same, leaving out each edit after which the config would not validate (422 with the problems). */
  private async editChecked(shared: SharedConfig, batch: Pending[]): Promise<Edited> {
    const edited: Edited = { doc: parseShared(shared), applied: [], failed: [] };
    for (const p of batch) {
      try {
        const next = edited.doc.clone();
        p.edit(next);
        const invalid = await this.validate(next);
        if (invalid) throw invalid;
        edited.doc = next;
        edited.applied.push(p);
      } catch (err) {
        edited.failed.push({ p, err });
      }
    }
    return edited;
  }

  /** Undefined when the candidate validates; else the error to answer. */
  private async validate(doc: Doc): Promise<ServerChangeError | undefined> {
    try {
      await this.check(doc.toString());
      return undefined;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return new ServerChangeError(422, `the change would make the shared config invalid, so it was not made: ${err.problems.map(formatProblem).join('; ')}`);
    }
  }
}

interface Edited {
  doc: Doc;
  applied: Pending[];
  failed: { p: Pending; err: unknown }[];
}

/** The shared config as a YAML document; one with YAML errors cannot be edited (409 with the first error). */
function parseShared(shared: SharedConfig): Doc {
  const doc = parseDocument(shared.text);
  const [error] = doc.errors;
  if (error) {
    const at = error.linePos?.[0];
    throw new ServerChangeError(
      409,
      `the shared config is not valid YAML (${shared.file}${at ? `:${at.line}:${at.col}` : ''}: ${error.message.split('\n')[0]}); fix it with \`velocity config push\``,
    );
  }
  return doc;
}

function serviceNode(doc: Doc, name: string): YAMLMap {
  const services = doc.get('services');
  const found = isSeq(services) ? services.items.find((s) => isMap(s) && s.get('name') === name) : undefined;
  if (!isMap(found)) throw new ServerChangeError(404, `no service named "${name}" in the shared config`, 'service');
  return found;
}

function serversOf(service: YAMLMap): YAMLSeq {
  const servers = service.get('servers');
  if (isSeq(servers)) return servers;
  throw new ServerChangeError(409, 'the service lists no servers in the shared config', 'service');
}

/** A server item's id and URL (`- http://…` or `- { url, name }`). */
function identify(item: unknown): { id: string; url: string } | undefined {
  const url = isScalar(item) ? item.value : isMap(item) ? item.get('url') : undefined;
  if (typeof url !== 'string') return undefined;
  const name = isMap(item) ? item.get('name') : undefined;
  try {
    return { id: serverIdFor({ url, name: typeof name === 'string' ? name : undefined }), url };
  } catch {
    return undefined;
  }
}

function serverIndex(servers: YAMLSeq, service: string, id: string): number {
  const at = servers.items.findIndex((item) => identify(item)?.id === id);
  if (at < 0) throw new ServerChangeError(404, `service "${service}" has no server "${id}" in the shared config`, 'server');
  return at;
}

/** The server as written in the file: a bare URL when everything else is default. */
function serverValue(server: ServerConfig): unknown {
  const fields = {
    url: server.url,
    ...(server.name ? { name: server.name } : {}),
    ...(server.weight !== 1 ? { weight: server.weight } : {}),
    ...(server.max_connections !== undefined ? { max_connections: server.max_connections } : {}),
    ...(server.health_path ? { health_path: server.health_path } : {}),
    ...(server.http2 ? { http2: true } : {}),
  };
  return Object.keys(fields).length === 1 ? server.url : fields;
}

export const addServer =
  (service: string, server: ServerConfig): SharedEdit =>
  (doc) => {
    const servers = serversOf(serviceNode(doc, service));
    const id = serverIdFor(server);
    if (servers.items.some((item) => identify(item)?.id === id || identify(item)?.url === server.url)) {
      throw new ServerChangeError(409, `service "${service}" already has server "${id}"`, 'url');
    }
    servers.add(doc.createNode(serverValue(server)));
  };

export const removeServer =
  (service: string, id: string): SharedEdit =>
  (doc) => {
    const servers = serversOf(serviceNode(doc, service));
    servers.delete(serverIndex(servers, service, id));
  };

export const setServerWeight =
  (service: string, id: string, weight: number): SharedEdit =>
  (doc) => {
    const servers = serversOf(serviceNode(doc, service));
    const at = serverIndex(servers, service, id);
    const item = servers.items[at];
    if (isMap(item)) item.set('weight', weight);
    else servers.set(at, doc.createNode({ url: identify(item)?.url, weight }));
  };
