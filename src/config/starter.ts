/**
 * Configs written for the user rather than by them: the commented starter of `velocity init`,
 * and the file equivalent to `velocity proxy --from … --to …`, so a one-line proxy can grow
 * into a file without relearning anything.
 */
import { stringify } from 'yaml';

/** The JSON Schema file `init` writes beside the config, named in its first line for editors. */
export const SCHEMA_FILE_NAME = 'velocity.schema.json';

export function starterConfig(schemaRef = `./${SCHEMA_FILE_NAME}`): string {
  return `# yaml-language-server: $schema=${schemaRef}
# A Velocity config, written by \`velocity init\`. Editors with the YAML language server complete
# and check it with the schema named above.
#   check:  velocity validate --config velocity.yaml
#   run:    velocity start --config velocity.yaml      (a changed file is reloaded; so is SIGHUP)
# Durations are written 250ms, 2s, 1m; sizes 16kb, 1mb; \${VAR} (or \${VAR:-default}) takes a
# value from the environment. Every field: docs/configuration.md in the Velocity repository;
# \`velocity schema\` prints the JSON Schema.

listeners:
  - type: http                     # plain HTTP/1.1 on every interface
    listen: ":8000"
  # HTTPS with a certificate per host name (SNI) and HTTP/2:
  # - type: https
  #   listen: ":443"
  #   tls:
  #     certificates:
  #       - { cert: /etc/velocity/tls/example.com.crt, key: /etc/velocity/tls/example.com.key }

services:
  - name: app
    hosts: ["*"]                   # Host names this service answers ("*" = any); exact beats *.wildcard
    paths: ["/"]                   # path prefixes; the longest match wins
    policy: round-robin            # or least-connections, weighted-round-robin, ip-hash, url-hash, …
    servers:
      - http://127.0.0.1:9001
      - { url: http://127.0.0.1:9002, weight: 1 }
    health:
      type: http                   # GET path on every server: 3 failures take it out, 2 passes bring it back
      path: /health
      interval: 2s
      timeout: 1s
    timeouts:
      connect: 5s
      response_header: 60s         # request sent → first response byte, else 504
    retries:
      attempts: 3                  # idempotent requests are tried again on another server

client:                            # limits for every client connection
  header_timeout: 10s              # slow request heads → 408
  body_timeout: 60s
  max_header_size: 16kb            # → 431
  max_connections: 10000           # per listener

rate_limits:
  - name: per-ip
    rate: 100/s                    # each client address; over it → 429 with Retry-After
    burst: 200
    key: [client_ip]

shutdown_timeout: 30s              # SIGTERM: in-flight requests get this long to finish

admin:
  listen: "127.0.0.1:9090"         # the API, /metrics, the dashboard, /livez and /readyz
  token: "\${VELOCITY_ADMIN_TOKEN:-}"  # at least 16 characters; unset, the API only reads
`;
}

export interface ProxyFlags {
  /** Listen addresses: `:8000`, `0.0.0.0:8000`, `[::]:8000`. */
  from: readonly string[];
  /** Servers: `127.0.0.1:9001`, `:9001` (this host), or a full `http://` / `https://` URL. */
  to: readonly string[];
  policy?: string | undefined;
  /** A path: HTTP health checks on every server. */
  health?: string | undefined;
  /** The admin listener's address, or `off`. */
  admin?: string | undefined;
}

/** `127.0.0.1:9001` → `http://127.0.0.1:9001`; `:9001` and `9001` → this host. A URL is kept as it is. */
export function serverUrlFromFlag(to: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(to)) return to;
  if (/^:?\d+$/.test(to)) return `http://127.0.0.1:${to.replace(':', '')}`;
  return `http://${to}`;
}

/** The config file that `velocity proxy` with these flags runs, as YAML. */
export function proxyConfig(flags: ProxyFlags): string {
  const service: Record<string, unknown> = { name: 'proxy' };
  if (flags.policy) service.policy = flags.policy;
  service.servers = flags.to.map(serverUrlFromFlag);
  if (flags.health) service.health = { type: 'http', path: flags.health };
  const config: Record<string, unknown> = { listen: flags.from.length > 0 ? [...flags.from] : [':8000'], services: [service] };
  if (flags.admin === 'off') config.admin = { enabled: false };
  else if (flags.admin) config.admin = { listen: flags.admin };
  return `# velocity proxy ${proxyCommandLine(flags)}\n# The same Velocity as a file: velocity start --config THIS_FILE\n${stringify(config)}`;
}

function proxyCommandLine(flags: ProxyFlags): string {
  const words = [...flags.from.map((f) => `--from ${f}`), ...flags.to.map((t) => `--to ${t}`)];
  if (flags.policy) words.push(`--policy ${flags.policy}`);
  if (flags.health) words.push(`--health ${flags.health}`);
  if (flags.admin) words.push(`--admin ${flags.admin}`);
  return words.join(' ');
}
