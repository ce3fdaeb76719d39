/**
 * This instance as a member of a fleet: it registers under an etcd lease (id, addresses,
 * version, threads, applied revision, health, request and error rates), watches the
 * fleet's prefix and reloads through the instance's one reload path when the shared config
 * changes, applies server states set through any instance, and reports its applied
 * revision or the error that made it refuse a config under its own key.
 *
 * When etcd cannot be reached it keeps serving the last config, says so (metric,
 * /api/v1/fleet, log) and retries with backoff; once back it reads the current state at
 * one revision and watches from the next, so no change is missed and none replayed.
 */
import type { Buffer } from 'node:buffer';
import { hostname } from 'node:os';
import type { Lease, Watcher } from 'etcd3';
import { z } from 'zod';
import { cappedBackoff } from '../backoff.ts';
import type { EtcdConfigStore } from '../config/etcd-source.ts';
import type { EtcdSourceConfig } from '../config/schema/fleet.ts';
import type { Logger } from '../observe/logger.ts';
import type { Collectors } from '../observe/metrics.ts';
import { ADMIN_STATES, type AdminState } from '../state/server-cells.ts';
import type { FleetBlocklist } from './blocklist.ts';
import { type EntryShape, readEntry } from './entries.ts';

/** The outcome of one reload, as the instance reports it. */
export interface ReloadOutcome {
  ok: boolean;
  at: string;
  revision?: number;
  errors?: string[];
}

/** Whether this instance runs a revision of the shared config: applied, refused (with the reload's errors), or neither yet. */
export type Applied = { applied: true } | { applied: false; refused?: string[] };

/** What the instance says about itself in its member record. */
export interface InstanceFacts {
  listen: string[];
  admin: string | undefined;
  threads: number;
  draining: boolean;
  /** Requests and failed ones served since start (rates are derived between reports). */
  requests: number;
  errors: number;
}

export interface FleetMemberDeps {
  store: EtcdConfigStore;
  source: EtcdSourceConfig;
  log: Logger;
  version: string;
  /** The instance's reload from its file and the shared config (the same path as SIGHUP). */
  reload(): Promise<ReloadOutcome>;
  facts(): InstanceFacts;
  /** The fleet's shared blocklist, when this instance keeps its list in memory (not in Redis). */
  blocklist?: FleetBlocklist | undefined;
  /** Whether this instance runs that server (not being removed). */
  hasServer(service: string, server: string): boolean;
  /** Sets a server's admin state on this instance (a server it does not run (yet) is left alone). */
  setServerState(service: string, server: string, state: AdminState): void;
}

const memberRecord = z.object({
  id: z.string(),
  version: z.string(),
  listen: z.array(z.string()),
  admin: z.string().nullable(),
  threads: z.number(),
  health: z.enum(['serving', 'draining']),
  started_at: z.string(),
  reported_at: z.string(),
  config: z.object({ revision: z.number().nullable(), ok: z.boolean(), at: z.string().nullable(), errors: z.array(z.string()).optional() }),
  requests_per_second: z.number(),
  errors_per_second: z.number(),
  requests_total: z.number(),
  errors_total: z.number(),
});
/** PREFIX/instances/ID → this JSON, under the member's lease. */
export type MemberRecord = z.infer<typeof memberRecord>;
const MEMBER_ENTRY: EntryShape<MemberRecord> = { names: 1, value: memberRecord, json: true };

export interface EtcdLink {
  reachable: boolean;
  since: string;
  error?: string;
  /** Failed attempts since it became unreachable. */
  attempts: number;
}

/** PREFIX/server-state/SERVICE/SERVER → the state (no key: enabled). */
const STATE_ENTRY: EntryShape<AdminState> = { names: 2, value: z.enum(ADMIN_STATES) };

const RETRY_BASE_MS = 250;
const RETRY_MAX_MS = 10_000;

export class FleetMember {
  readonly id: string;
  private readonly deps: FleetMemberDeps;
  private readonly startedAt = new Date().toISOString();
  private link: EtcdLink = { reachable: false, since: new Date().toISOString(), attempts: 0 };
  private outages = 0;
  private lease: Lease | undefined;
  private watcher: Watcher | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private reportTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private connecting: Promise<void> | undefined;
  /** Bumped by each loss: an attempt begun before it gives up instead of declaring etcd reachable. */
  private generation = 0;
  /** The retry came while an attempt was under way: run it when that attempt ends. */
  private retryWanted = false;
  /** Server states set fleet-wide: key → state (absent = enabled). */
  private readonly states = new Map<string, { service: string; server: string; state: AdminState }>();
  /** The etcd revision of the last state applied per server-state key (so an older one never overrides it). */
  private readonly stateRevisions = new Map<string, number>();
  private lastOutcome: ReloadOutcome | undefined;
  private appliedRevision: number | undefined;
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  private lastCounts = { at: Date.now(), requests: 0, errors: 0, rps: 0, eps: 0 };
  private lastMembers: MemberRecord[] = [];
  /** Member records found malformed (KEY@MOD_REVISION), warned about once. */
  private badRecords = new Set<string>();
  private readonly waiters = new Set<{ revision: number; done: (result: Applied) => void }>();
  /** The last shared config this instance refused. */
  private refused: { revision: number; errors: string[] } | undefined;

  constructor(deps: FleetMemberDeps, id: string) {
    this.deps = deps;
    this.id = id;
  }

  /** The default member id: this host and a port that is unique on it. */
  static defaultId(port: number | undefined): string {
    return `${hostname()}:${port ?? process.pid}`;
  }

  private get prefix(): string {
    return this.deps.source.prefix;
  }

  private get memberKey(): string {
    return this.deps.store.key('instances', this.id);
  }

  get etcd(): EtcdLink {
    return { ...this.link };
  }

  get revision(): number | undefined {
    return this.appliedRevision;
  }

  /** Connects (retrying in the background until etcd answers) and starts reporting. */
  start(): void {
    this.reportTimer = setInterval(() => void this.report(), this.deps.source.report_interval);
    this.reportTimer.unref();
    void this.connect();
  }

  /** After every reload of this instance (from etcd, SIGHUP or the admin API): record and publish it. */
  reloaded(outcome: ReloadOutcome): void {
    this.lastOutcome = outcome;
    if (outcome.revision !== undefined) {
      if (outcome.ok) this.appliedRevision = outcome.revision;
      else this.refused = { revision: outcome.revision, errors: outcome.errors ?? [] };
      const result: Applied = outcome.ok ? { applied: true } : { applied: false, refused: outcome.errors ?? [] };
      for (const waiter of [...this.waiters]) if (waiter.revision <= outcome.revision) waiter.done(result);
    }
    if (outcome.ok) this.applyStates();
    else this.deps.log.error({ errors: outcome.errors, keptRevision: this.appliedRevision ?? null }, 'fleet: the shared config was refused; serving the last good one');
    void this.report();
  }

  /** Once this instance runs the shared config at `revision` or later, or refused it (with the errors); not applied after `timeoutMs`. */
  applied(revision: number, timeoutMs = 10_000): Promise<Applied> {
    if ((this.appliedRevision ?? 0) >= revision) return Promise.resolve({ applied: true });
    const refused = this.refused;
    if (refused && refused.revision >= revision) return Promise.resolve({ applied: false, refused: refused.errors });
    return new Promise((resolve) => {
      const waiter = {
        revision,
        done: (result: Applied) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(result);
        },
      };
      const timer = setTimeout(() => waiter.done({ applied: false }), timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** Reloads from the shared config; calls that arrive during one reload make one more. */
  private sync(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      try {
        do {
          this.syncAgain = false;
          await this.deps.reload();
        } while (this.syncAgain && !this.closed);
      } finally {
        // A reload that threw must not leave every later sync waiting on this one.
        this.syncing = undefined;
      }
    })();
    return this.syncing;
  }

  /** PREFIX/server-state/SERVICE/SERVER; with a service alone, the folder. */
  private stateKey(service: string, server = ''): string {
    return this.deps.store.key('server-state', ...(service ? [encodeURIComponent(service)] : []), encodeURIComponent(server));
  }

  /**
   * Sets a server's state for the whole fleet (enabled removes the key); false when this
   * instance has no such server. Applied here only once etcd took it: a write that failed
   * changes nothing anywhere.
   */
  async setServerState(service: string, server: string, state: AdminState): Promise<boolean> {
    if (!this.deps.hasServer(service, server)) return false;
    const key = this.stateKey(service, server);
    const { client } = this.deps.store;
    const written = state === 'enabled' ? await client.delete().key(key).exec() : await client.put(key).value(state).exec();
    // The watch brings it too; whichever comes first applies it, and nothing older after it.
    this.applyState(key, service, server, state, Number(written.header.revision));
    return true;
  }

  private applyStates(): void {
    for (const { service, server, state } of this.states.values()) this.deps.setServerState(service, server, state);
  }

  private onStateKey(key: string, value: string | undefined, revision: number): void {
    const entry = readEntry(this.deps.log, this.stateKey(''), key, value, STATE_ENTRY);
    const [service, server] = entry?.names ?? [];
    if (entry && service !== undefined && server !== undefined) this.applyState(key, service, server, entry.value ?? 'enabled', revision);
  }

  private applyState(key: string, service: string, server: string, state: AdminState, revision: number): void {
    if ((this.stateRevisions.get(key) ?? 0) >= revision) return;
    this.stateRevisions.set(key, revision);
    if (state === 'enabled') this.states.delete(key);
    else this.states.set(key, { service, server, state });
    this.deps.setServerState(service, server, state);
  }

  /** One attempt to (re)join: lease, current state at one revision, reload, watch from the next revision. */
  private connect(): Promise<void> {
    if (this.connecting) {
      this.retryWanted = true;
      return this.connecting;
    }
    this.retryWanted = false;
    this.connecting = this.attempt().finally(() => {
      this.connecting = undefined;
      if (this.retryWanted) void this.connect();
    });
    return this.connecting;
  }

  private async attempt(): Promise<void> {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    const generation = this.generation;
    // etcd was lost again while this attempt waited: the retry that loss scheduled takes over.
    const superseded = () => generation !== this.generation || this.closed;
    const { client } = this.deps.store;
    try {
      if (!this.lease) {
        const lease = client.lease(Math.ceil(this.deps.source.lease_ttl / 1000), { autoKeepAlive: true });
        lease.on('lost', (err) => {
          if (this.lease !== lease) return;
          this.lease = undefined;
          this.lost(`membership lease lost: ${err.message}`);
        });
        // A connection that hangs (packets dropped, no reset) shows first here: no keepalive answer within the TTL.
        // The lease is let go at once and a new one granted when etcd answers again: etcd3 would keep retrying this
        // one on the hung channel, and a second failure of the same stream leaves a keepalive timer running forever.
        lease.on('keepaliveFailed', () => {
          if (this.lease !== lease) return;
          this.lease = undefined;
          lease.release();
          this.lost('no answer to the membership lease keepalive');
        });
        await lease.grant().catch((err: unknown) => {
          lease.release();
          throw err;
        });
        this.lease = lease;
        if (superseded()) return;
      }
      // Everything the fleet shares, read at one revision; the watch starts at the next.
      const res = await client.getAll().prefix(`${this.prefix}/`).exec();
      if (superseded()) return;
      const readAt = Number(res.header.revision);
      const kvs = res.kvs.map((kv) => ({ key: kv.key.toString(), value: kv.value.toString(), revision: Number(kv.mod_revision) }));
      // A state whose key went while this instance was away was set back to enabled meanwhile.
      const previous = [...this.states.entries()];
      this.states.clear();
      this.stateRevisions.clear();
      for (const { key, value, revision } of kvs) if (key.startsWith(this.stateKey(''))) this.onStateKey(key, value, revision);
      for (const [key, { service, server }] of previous) if (!this.states.has(key)) this.deps.setServerState(service, server, 'enabled');
      const blocklist = this.deps.blocklist;
      blocklist?.resync(kvs.filter((kv) => kv.key.startsWith(blocklist.prefix)));
      const watcher = await client
        .watch()
        .prefix(`${this.prefix}/`)
        .startRevision(String(readAt + 1))
        .create();
      if (superseded()) {
        void watcher.cancel().catch(() => undefined);
        return;
      }
      this.watcher = watcher;
      const lostIfCurrent = (what: string) => (err: Error) => {
        if (this.watcher === watcher) this.lost(`${what}: ${err.message}`);
      };
      watcher.on('put', (kv) => this.onChange(kv.key.toString(), kv.value.toString(), Number(kv.mod_revision)));
      watcher.on('delete', (kv) => this.onChange(kv.key.toString(), undefined, Number(kv.mod_revision)));
      watcher.on('disconnected', lostIfCurrent('watch disconnected'));
      watcher.on('error', lostIfCurrent('watch failed'));
      // The config as it is now: whatever changed while this instance was away, nothing older.
      await this.sync();
      if (superseded()) return;
      const wasDown = !this.link.reachable && this.link.attempts > 0;
      this.link = { reachable: true, since: new Date().toISOString(), attempts: 0 };
      if (wasDown) this.deps.log.info({ revision: this.appliedRevision ?? null }, 'fleet: etcd reachable again; resynced to the current revision');
      await this.report();
    } catch (err) {
      if (!superseded()) this.lost((err as Error).message);
    }
  }

  private onChange(key: string, value: string | undefined, revision: number): void {
    if (key === this.deps.store.configKey) void this.sync();
    else if (key.startsWith(this.stateKey(''))) this.onStateKey(key, value, revision);
    else if (this.deps.blocklist && key.startsWith(this.deps.blocklist.prefix)) this.deps.blocklist.applyRemote(key, value);
  }

  /** etcd stopped answering: keep serving, say so, and retry with backoff. */
  private lost(reason: string): void {
    if (this.closed) return;
    this.generation++;
    const watcher = this.watcher;
    this.watcher = undefined;
    void watcher?.cancel().catch(() => undefined);
    if (this.link.reachable || this.link.attempts === 0) {
      this.outages++;
      this.link = { reachable: false, since: new Date().toISOString(), error: reason, attempts: 0 };
      this.deps.log.warn({ error: reason, endpoints: this.deps.store.endpoints }, 'fleet: etcd unreachable; serving the last applied config and retrying');
    } else this.link = { ...this.link, error: reason };
    const delay = cappedBackoff(RETRY_BASE_MS, RETRY_MAX_MS, this.link.attempts);
    this.link.attempts++;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), delay);
    this.retryTimer.unref();
  }

  /** This instance's member record as it stands. */
  record(): MemberRecord {
    const facts = this.deps.facts();
    const now = Date.now();
    const last = this.lastCounts;
    if (now - last.at >= 1_000) {
      const seconds = (now - last.at) / 1000;
      this.lastCounts = { at: now, requests: facts.requests, errors: facts.errors, rps: (facts.requests - last.requests) / seconds, eps: (facts.errors - last.errors) / seconds };
    }
    const outcome = this.lastOutcome;
    return {
      id: this.id,
      version: this.deps.version,
      listen: facts.listen,
      admin: facts.admin ?? null,
      threads: facts.threads,
      health: facts.draining ? 'draining' : 'serving',
      started_at: this.startedAt,
      reported_at: new Date(now).toISOString(),
      config: { revision: this.appliedRevision ?? null, ok: outcome?.ok ?? true, at: outcome?.at ?? null, ...(outcome && !outcome.ok ? { errors: outcome.errors } : {}) },
      requests_per_second: Math.round(this.lastCounts.rps * 10) / 10,
      errors_per_second: Math.round(this.lastCounts.eps * 10) / 10,
      requests_total: facts.requests,
      errors_total: facts.errors,
    };
  }

  private async report(): Promise<void> {
    const lease = this.lease;
    if (!lease || !this.link.reachable || this.closed) return;
    try {
      await lease.put(this.memberKey).value(JSON.stringify(this.record())).exec();
    } catch (err) {
      this.lost(`member report failed: ${(err as Error).message}`);
    }
  }

  /** Every registered instance (this one first), as etcd has them; the last known list when etcd is unreachable. */
  async members(): Promise<{ instances: MemberRecord[]; fresh: boolean }> {
    if (this.link.reachable) {
      const prefix = this.deps.store.key('instances', '');
      let kvs: { key: Buffer; value: Buffer; mod_revision: string }[] | undefined;
      try {
        kvs = (await this.deps.store.client.getAll().prefix(prefix).exec()).kvs;
      } catch (err) {
        this.lost(`listing members failed: ${(err as Error).message}`);
      }
      if (kvs) {
        const bad = new Set<string>();
        const others: MemberRecord[] = [];
        for (const kv of kvs) {
          const key = kv.key.toString();
          const seen = `${key}@${kv.mod_revision}`;
          const record = this.badRecords.has(seen) ? undefined : readEntry(this.deps.log, prefix, key, kv.value.toString(), MEMBER_ENTRY)?.value;
          if (!record) bad.add(seen);
          else if (record.id !== this.id) others.push(record);
        }
        this.badRecords = bad;
        this.lastMembers = others;
        return { instances: [this.record(), ...others], fresh: true };
      }
    }
    return { instances: [this.record(), ...this.lastMembers], fresh: false };
  }

  /** Samples for the fleet metrics (declared in metric-table.ts). */
  samples(): { up: number; outages: number; revision: number } {
    return { up: this.link.reachable ? 1 : 0, outages: this.outages, revision: this.appliedRevision ?? 0 };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.reportTimer);
    for (const waiter of [...this.waiters]) waiter.done({ applied: false });
    await this.watcher?.cancel().catch(() => undefined);
    // Leaving on purpose: the record goes at once instead of at the lease's expiry.
    await this.lease?.revoke().catch(() => undefined);
  }
}

/** The fleet metrics of an instance (none when it is not in a fleet). */
export function fleetMetrics(member: () => FleetMember | undefined): Collectors {
  const one = (pick: (s: ReturnType<FleetMember['samples']>) => number) => () => {
    const m = member();
    return m ? [{ labels: {}, value: pick(m.samples()) }] : [];
  };
  return {
    velocity_fleet_etcd_up: one((s) => s.up),
    velocity_fleet_etcd_outages_total: one((s) => s.outages),
    velocity_fleet_config_revision: one((s) => s.revision),
  };
}
