/**
 * An `--import` hook for a real Velocity process: every module it resolves (by import or
 * require, on any thread) is appended to the file named by VELOCITY_MODULE_RECORD as
 * "THREAD_ID URL". Tests read it to see which packages a config made the process load.
 */
import { appendFileSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { threadId } from 'node:worker_threads';

const file = process.env.VELOCITY_MODULE_RECORD;
if (file) {
  registerHooks({
    resolve(specifier, context, next) {
      const resolved = next(specifier, context);
      appendFileSync(file, `${threadId} ${resolved.url}\n`);
      return resolved;
    },
  });
}
