/**
 * Reloads when the config file changes. Watches the file's folder, not the file,
 * because editors and config-management tools replace files by rename; changes
 * are debounced so a save written in pieces reloads once.
 */
import { type FSWatcher, watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { Logger } from '../observe/logger.ts';

export function watchConfigFile(file: string, onChange: () => void, log: Logger, debounceMs = 250): () => void {
  const path = resolve(file);
  const name = basename(path);
  let timer: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(path), (_event, changed) => {
      if (changed !== null && changed !== name) return;
      clearTimeout(timer);
      timer = setTimeout(onChange, debounceMs);
    });
    watcher.on('error', (err) => log.warn({ err: err.message, file: path }, 'config file watch failed; SIGHUP and the admin API still reload'));
  } catch (err) {
    log.warn({ err: (err as Error).message, file: path }, 'cannot watch the config file; SIGHUP and the admin API still reload');
  }
  return () => {
    clearTimeout(timer);
    watcher?.close();
  };
}
