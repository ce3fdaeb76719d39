/**
 * A relative `acme.storage` directory is in the config file's folder, not the
 * working directory: the real binary, started from another directory, keeps its
 * account and certificates beside its config, and every data-path thread serves
 * the certificate from there.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { startVelocityProcess } from '../support/velocity.ts';
import { acmeLab, acmeYaml, waitForIssued } from './acme-support.ts';

test('a relative acme.storage resolves against the config file’s folder, whatever the working directory', async (t) => {
  const lab = await acmeLab(t);
  if (!lab) return;
  const elsewhere = mkdtempSync(join(tmpdir(), 'velocity-cwd-'));
  t.after(() => rmSync(elsewhere, { recursive: true, force: true }));
  const velocity = await startVelocityProcess(t, acmeYaml(lab, { storage: 'acme-data', workers: 2 }), { cwd: elsewhere });

  await waitForIssued(lab.httpsPort, 'shop.example.com');
  const ca = new URL(lab.pebble.directory);
  const caDir = `${ca.hostname}-${ca.port}-dir`;
  const beside = join(dirname(velocity.configFile), 'acme-data');
  assert.ok(existsSync(join(beside, 'accounts', caDir, 'account.key')), 'the account key is beside the config');
  assert.ok(existsSync(join(beside, 'certificates', caDir, 'shop.example.com', 'shop.example.com.pem')), 'the certificate is beside the config');
  assert.equal(existsSync(join(elsewhere, 'acme-data')), false, 'nothing in the working directory');
});
