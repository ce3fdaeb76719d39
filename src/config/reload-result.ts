/** What a reload answers, logs and shows on the dashboard and at /api/v1/config/reload. */
export interface ReloadResult {
  ok: boolean;
  at: string;
  version: number;
  errors?: string[];
  /** Fleet mode: the etcd revision of the shared config this reload read. */
  revision?: number;
  /**
   * Config fields that changed but only take effect when Velocity restarts (the rest of
   * the reload is applied). Absent when every change was applied live.
   */
  restart_required?: string[];
}
