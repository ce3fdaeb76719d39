/**
 * Checks that a config's custom code loads: policy modules and middleware. Apart from
 * load.ts so that worker threads, which check the modules they will run, do not load
 * the YAML reader and the config schema.
 */
import { loadPolicyModule } from '../balancer/module-loader.ts';
import { ConfigError, type ConfigProblem } from '../errors.ts';
import { middlewareProblems } from '../middleware/check.ts';
import type { Config } from './schema/root.ts';

export interface CheckedConfig {
  config: Config;
  /** Where a field path sits in the file, for file:line:column errors. */
  locate?: (path: PropertyKey[], message: string) => ConfigProblem;
}

/** Custom policy modules must load and implement the interface; otherwise it is a config error at `module`. */
export async function checkPolicyModules(loaded: CheckedConfig, baseDir: string): Promise<void> {
  const problems: ConfigProblem[] = [];
  for (const [i, service] of loaded.config.services.entries()) {
    const policy = service.policy as { name: string; module?: string; options: Record<string, unknown> };
    if (policy.name !== 'module' || !policy.module) continue;
    try {
      await loadPolicyModule(policy.module, baseDir, policy.options);
    } catch (err) {
      const message = (err as Error).message;
      problems.push(loaded.locate ? loaded.locate(['services', i, 'policy', 'module'], message) : { file: '', line: 1, column: 1, path: `services[${i}].policy.module`, message });
    }
  }
  for (const p of await middlewareProblems(loaded.config.services, baseDir))
    problems.push(loaded.locate ? loaded.locate(p.path, p.message) : { file: '', line: 1, column: 1, path: p.path.join('.'), message: p.message });
  if (problems.length > 0) throw new ConfigError(problems);
}
