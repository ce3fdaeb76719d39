/**
 * Auto-ban, fail2ban style: a client refused by a rule more than `after` times
 * within `window` goes on the blocklist for `duration`. Refusals are counted with
 * the same GCRA store as the limits (shared through Redis when configured): a
 * bucket of `after` refusals that refills over `window`, so `after + 1` refusals in
 * quick succession ban, and refusals spread thinner than `after` per window never do.
 */
import type { Logger } from '../observe/logger.ts';
import type { Blocklist } from './blocklist.ts';
import type { CompiledRule } from './rate-limit.ts';
import type { RateLimitStore } from './rate-limit-store.ts';

export class AutoBan {
  private readonly store: RateLimitStore;
  private readonly blocklist: Blocklist;
  private readonly log: Logger;

  constructor(store: RateLimitStore, blocklist: Blocklist, log: Logger) {
    this.store = store;
    this.blocklist = blocklist;
    this.log = log;
  }

  /** Counts one refusal of `ip` by `rule`; bans when it is one too many. Never throws. */
  async refused(rule: CompiledRule, ip: string, now: number): Promise<void> {
    const ban = rule.rule.ban;
    if (!ban) return;
    try {
      const verdict = await this.store.take(`ban|${rule.id}|${ip}`, { intervalMs: ban.window / ban.after, burst: ban.after }, now);
      if (verdict.allowed) return;
      const reason = `over rate limit "${rule.name}" more than ${ban.after} times in ${ban.window} ms`;
      await this.blocklist.add(ip, ban.duration, reason, 'auto-ban');
      this.log.warn({ ip, rule: rule.id, durationMs: ban.duration }, 'client banned');
    } catch (err) {
      // A full blocklist or unreachable shared state: the rate limit itself still applies.
      this.log.debug({ err: (err as Error).message, ip }, 'auto-ban not applied');
    }
  }
}
