/** The dashboard's Certificates section against a real CA: the name with its issuer and expiry, and Renew now. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchChromium } from '../support/chromium.ts';
import { acmeLab, acmeYaml, certificateStatus, startAcmeVelocity, TOKEN, waitForIssued, waitUntil } from './acme-support.ts';

test('the dashboard lists the ACME certificate and its Renew now button orders a new one', async (t) => {
  const browser = await launchChromium(t);
  if (!browser) return;
  const lab = await acmeLab(t);
  if (!lab) return;
  const velocity = await startAcmeVelocity(t, acmeYaml(lab));
  const first = await waitForIssued(lab.httpsPort, 'shop.example.com');
  const page = await (await browser.newContext({ viewport: { width: 1366, height: 900 } })).newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  await page.goto(`http://127.0.0.1:${velocity.adminAddress?.port}/`);
  const row = page.locator('#certs-table tr[data-name="shop.example.com"][data-status="valid"]');
  await row.waitFor({ timeout: 20_000 });
  assert.match(String(await row.locator('.issuer').textContent()), /Pebble Intermediate/);
  assert.match(String(await row.locator('.expires').textContent()), /^\d{4}-\d\d-\d\d \d\d:\d\d$/);

  await page.getByLabel('Admin token').fill(TOKEN);
  await page.getByRole('button', { name: 'Use token' }).click();
  await page.getByRole('button', { name: 'Renew the certificate of shop.example.com now' }).click();
  await page.getByText('shop.example.com: renewed; new connections get the new certificate.').waitFor({ timeout: 60_000 });
  const renewed = await waitForIssued(lab.httpsPort, 'shop.example.com', { notSerial: first.serialNumber, timeoutMs: 30_000 });
  await waitUntil(
    'the API to report the renewal',
    async () => (await certificateStatus(velocity, 'shop.example.com')).serial?.toUpperCase() === renewed.serialNumber.toUpperCase(),
  );
  assert.deepEqual(pageErrors, []);
});
