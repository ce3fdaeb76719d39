/** The running config, validation of a posted one, and reloads. */
import { parseConfig } from '../../config/load.ts';
import type { Config } from '../../config/schema/root.ts';
import { ConfigError, formatProblem } from '../../errors.ts';
import type { ReloadResult } from '../../runtime/instance.ts';
import { AdminError, type AdminRoute } from '../router.ts';

export interface ConfigApiDeps {
  config(): Config;
  lastReload(): ReloadResult | undefined;
  reload(next?: Config): Promise<ReloadResult>;
  configFile: string | undefined;
}

/** The config as JSON, with the admin token left out. */
function redacted(config: Config): unknown {
  return { ...config, admin: { ...config.admin, token: config.admin.token ? '(set)' : undefined } };
}

function postedYaml(body: unknown): string {
  if (body && typeof body === 'object' && 'raw' in body) return String((body as { raw: unknown }).raw);
  if (body && typeof body === 'object' && 'yaml' in body && typeof (body as { yaml: unknown }).yaml === 'string') return (body as { yaml: string }).yaml;
  throw new AdminError(400, 'send the config as YAML (content-type text/yaml) or JSON { "yaml": "…" }', 'yaml');
}

export function configRoutes(deps: ConfigApiDeps): AdminRoute[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/config',
      mutates: false,
      summary: 'The running config (validated, with defaults filled in; the admin token is not shown)',
      handle: () => ({ file: deps.configFile ?? null, config: redacted(deps.config()) }),
    },
    {
      method: 'POST',
      path: '/api/v1/config/validate',
      mutates: false,
      summary: 'Validate a posted YAML config without applying it; every problem with line and column',
      handle: ({ body }) => {
        try {
          const { config } = parseConfig(postedYaml(body), 'posted.yaml');
          return { ok: true, services: config.services.length };
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          return { ok: false, errors: err.problems.map(formatProblem), problems: err.problems };
        }
      },
    },
    {
      method: 'POST',
      path: '/api/v1/config/reload',
      mutates: true,
      summary: 'Reload: the config file again, or a posted YAML config; a bad one leaves the running config unchanged',
      handle: async ({ body }) => {
        let next: Config | undefined;
        if (body !== undefined) {
          try {
            next = parseConfig(postedYaml(body), 'posted.yaml').config;
          } catch (err) {
            if (!(err instanceof ConfigError)) throw err;
            throw new AdminError(400, err.problems.map(formatProblem).join('\n'), 'yaml');
          }
        } else if (!deps.configFile) throw new AdminError(409, 'Velocity was not started from a file; post a config to reload');
        return deps.reload(next);
      },
    },
    {
      method: 'GET',
      path: '/api/v1/config/reload',
      mutates: false,
      summary: 'The result of the last reload (from the API, the file watcher or SIGHUP)',
      handle: () => deps.lastReload() ?? { ok: true, at: null, version: 1, note: 'no reload yet' },
    },
  ];
}
