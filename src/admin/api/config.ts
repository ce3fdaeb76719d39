/** The running config, validation of a posted one, and reloads. */
import { parseConfig } from '../../config/load.ts';
import type { ReloadResult } from '../../config/reload-result.ts';
import type { Config } from '../../config/schema/root.ts';
import { withoutSecrets } from '../../config/secrets.ts';
import { ConfigError, formatProblem } from '../../errors.ts';
import { AdminError, type AdminRoute } from '../router.ts';

export interface ConfigApiDeps {
  config(): Config;
  lastReload(): ReloadResult | undefined;
  reload(next?: Config): Promise<ReloadResult>;
  configFile: string | undefined;
}

/** A URL's password (redis://:pw@…, postgres://user:pw@…) replaced; other strings as they are. */
function withoutPassword(value: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(value)) return value;
  try {
    const url = new URL(value);
    if (!url.password) return value;
    url.password = 'redacted';
    return url.toString();
  } catch {
    return '(redacted)';
  }
}

function redactUrls(value: unknown): unknown {
  if (typeof value === 'string') return withoutPassword(value);
  if (Array.isArray(value)) return value.map(redactUrls);
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactUrls(v)]));
  return value;
}

/** The config as JSON with its secret fields (declared in the schema: admin.token, passwords, acme.eab.hmac…) shown as set, and passwords in URLs (state.url, logs.url…) replaced. */
function redacted(config: Config): unknown {
  return redactUrls(withoutSecrets(config));
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
      summary: 'The running config (validated, with defaults filled in; secrets such as the admin token and passwords are shown as set, never their values)',
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
