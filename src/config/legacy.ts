/**
 * The Go Velocity's `config.yml` (api_port, listen_port, services[].domain,
 * targetURLs, algorythm) translated to the current format, so old files keep working.
 */

const LEGACY_POLICIES: Record<string, string> = {
  roundrobin: 'round-robin',
  leastconnections: 'least-connections',
  weightedroundrobin: 'weighted-round-robin',
};

export function isLegacyConfig(raw: unknown): raw is Record<string, unknown> {
  if (!raw || typeof raw !== 'object') return false;
  const obj = raw as Record<string, unknown>;
  if ('listen_port' in obj || 'api_port' in obj) return true;
  const services = obj.services;
  return Array.isArray(services) && services.some((s) => s && typeof s === 'object' && ('targetURLs' in s || 'algorythm' in s || 'domain' in s));
}

/**
 * Returns the equivalent new-format object plus a map from new paths to the old
 * paths, so validation errors still point at the line the operator wrote.
 */
export function translateLegacy(raw: Record<string, unknown>): { config: Record<string, unknown>; pathMap: (path: PropertyKey[]) => PropertyKey[] } {
  const { listen_port, api_port, services, ...rest } = raw;
  const config: Record<string, unknown> = { ...rest };
  if (listen_port !== undefined) config.listen = `0.0.0.0:${String(listen_port)}`;
  if (api_port !== undefined) config.admin = { listen: `127.0.0.1:${String(api_port)}` };
  if (Array.isArray(services)) {
    config.services = services.map((s: unknown) => {
      if (!s || typeof s !== 'object') return s;
      const { domain, targetURLs, algorythm, ...others } = s as Record<string, unknown>;
      const out: Record<string, unknown> = { ...others };
      if (domain !== undefined) out.hosts = [typeof domain === 'string' ? domain.replace(/:\d+$/, '') : domain];
      if (targetURLs !== undefined) out.servers = targetURLs;
      if (algorythm !== undefined) {
        out.policy = typeof algorythm === 'string' ? (LEGACY_POLICIES[algorythm.toLowerCase().replace(/[^a-z]/g, '')] ?? algorythm) : algorythm;
      }
      return out;
    });
  }
  const renames: Record<string, string> = { listen: 'listen_port', admin: 'api_port', hosts: 'domain', servers: 'targetURLs', policy: 'algorythm' };
  const pathMap = (path: PropertyKey[]): PropertyKey[] => {
    const mapped = path.map((p) => (typeof p === 'string' && renames[p] ? renames[p] : p));
    // admin.listen and hosts[0] have no counterpart below the renamed key in the old file.
    if (mapped[0] === 'api_port') return ['api_port'];
    const hostIndex = mapped.indexOf('domain');
    return hostIndex >= 0 ? mapped.slice(0, hostIndex + 1) : mapped;
  };
  return { config, pathMap };
}
