/**
 * The live dashboard: headless Chromium loads the page from a running Velocity
 * with real backends and active health checks, and the page is checked against
 * what the admin API says. Plus unit tests of the rolling-window aggregator.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { describe, type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { request } from 'undici';
import { LiveAggregator } from '../../src/admin/dashboard/aggregator.ts';
import { LatencyHistogram } from '../../src/admin/dashboard/latency.ts';
import type { RequestRecord } from '../../src/observe/events.ts';
import { chromiumForSuite } from '../support/chromium.ts';
import { type BackendProcess, eventually, get, load, startBackends, startInProcess, testAgent } from '../support/velocity.ts';
import { rawGet, startForwarder } from './dashboard-support.ts';

/** How long to wait for the page to show a condition: generous, since CI shares a loaded machine (a 5 s wait for a log row failed there). */
const CONDITION_WAIT = 30_000;

const TOKEN = 'dashboard-token-0123456789';
/** One Chromium for the file's tests; each test has a browser context of its own. */
const chromiumFor = chromiumForSuite();
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/dashboard/', import.meta.url));

const yamlFor = (backends: BackendProcess[], extra = '') => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: ${TOKEN} }
logs: { store: memory, flush_interval: 100ms }
services:
  - name: app
    servers: [${backends.map((b) => `{ url: "${b.url}", name: ${b.name} }`).join(', ')}]
    health: { type: http, interval: 200ms, timeout: 2s, unhealthy_threshold: 2, healthy_threshold: 1 }
  - name: empty
    hosts: [empty.test]
${extra}`;

async function api(port: number, method: string, path: string, body?: unknown, token: string | null = TOKEN) {
  const res = await request(`http://127.0.0.1:${port}${path}`, {
    method: method as 'GET',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: text ? JSON.parse(text) : undefined };
}

/** Backends, Velocity and a page on its dashboard; undefined when Chromium cannot run (skipped loudly). */
async function setup(t: TestContext, options: { backends?: number; viaForwarder?: boolean } = {}) {
  const browser = await chromiumFor(t);
  if (!browser) return undefined;
  const backends = await startBackends(t, options.backends ?? 2);
  const velocity = await startInProcess(t, yamlFor(backends));
  const adminPort = velocity.adminAddress?.port as number;
  const forwarder = options.viaForwarder ? await startForwarder(t, adminPort) : undefined;
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  await page.goto(`http://127.0.0.1:${forwarder?.port ?? adminPort}/`);
  await page.waitForSelector('body[data-connection="live"]', { timeout: CONDITION_WAIT });
  return { browser, page, backends, velocity, adminPort, forwarder, pageErrors };
}

const rowOf = (page: Page, service: string, server: string) => page.locator(`[data-service="${service}"] tr[data-server="${server}"]`);

async function useToken(page: Page, token: string) {
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Use token' }).click();
}

describe('dashboard in Chromium', () => {
  test('charts and numbers update while load runs; screenshots in dark and light at laptop and phone width', async (t) => {
    const s = await setup(t, { backends: 3 });
    if (!s) return;
    const { page, velocity } = s;
    const rpsPath = page.locator('[data-service="app"] svg[data-chart="rps"] path.s0');
    const before = await rpsPath.getAttribute('d');
    const agent = testAgent(t);
    const url = `http://127.0.0.1:${velocity.address.port}`;
    let stop = false;
    const traffic = load(100_000, 6, async (i) => {
      if (stop) return;
      // Mostly quick answers, some slow ones and a few 5xx so every chart has a shape.
      await get(agent, i % 50 === 0 ? `${url}/status/503` : `${url}/?delay=${i % 10 === 0 ? 40 : 2}`);
    });
    // Stopped when the test ends, also when an assertion fails (then Velocity may close first: not a second failure).
    traffic.catch(() => undefined);
    t.after(() => {
      stop = true;
    });
    await eventually(
      async () => {
        const rps = Number(((await page.locator('#overview dd').first().textContent()) ?? '').replace(/,/g, ''));
        return rps > 0 && (await rpsPath.getAttribute('d')) !== before;
      },
      10_000,
      'the requests/s number and chart change under load',
      200,
    );
    // A few seconds of history for the charts and screenshots: the p99 line has several segments, and b1 a share.
    const p99Line = page.locator('[data-service="app"] svg[data-chart="lat"] path.s2');
    await eventually(
      async () => ((await p99Line.getAttribute('d')) ?? '').split('L').length > 4 && (await rowOf(page, 'app', 'b1').locator('td.share').textContent()) !== '0%',
      CONDITION_WAIT,
      'the p99 line has segments and b1 takes a share of the traffic',
      200,
    );
    mkdirSync(ARTIFACTS, { recursive: true });
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.setViewportSize({ width: 1366, height: 900 });
      await page.screenshot({ path: `${ARTIFACTS}laptop-${scheme}.png`, fullPage: true });
      await page.setViewportSize({ width: 390, height: 844 });
      await page.screenshot({ path: `${ARTIFACTS}phone-${scheme}.png`, fullPage: true });
      const overflow = Number(await page.evaluate('document.documentElement.scrollWidth - window.innerWidth'));
      assert.ok(overflow <= 0, `no sideways scrolling of the page at phone width (${overflow}px too wide)`);
    }
    assert.equal(await page.locator('[data-service="empty"] .no-servers').isVisible(), true, 'a service with no servers says so');
    stop = true;
    await traffic;
    assert.deepEqual(s.pageErrors, []);
  });

  test('a killed backend turns its row unhealthy within the health-check window', async (t) => {
    const s = await setup(t);
    if (!s) return;
    const { page, backends } = s;
    const b2 = backends[1] as BackendProcess;
    await page.locator('[data-service="app"] tr[data-server="b2"][data-health="up"]').waitFor();
    const killed = Date.now();
    await b2.stop('SIGKILL');
    // 2 failed checks at 200 ms intervals (+ timeouts) plus one snapshot second.
    await page.locator('[data-service="app"] tr[data-server="b2"][data-health="down"]').waitFor({ timeout: CONDITION_WAIT });
    console.log(`dashboard: killed backend shown unhealthy after ${Date.now() - killed} ms`);
    assert.equal(await rowOf(page, 'app', 'b1').getAttribute('data-health'), 'up');
    assert.match((await rowOf(page, 'app', 'b2').locator('td.health').textContent()) ?? '', /down/);
  });

  test('drain through the UI changes the server in the API, and enable brings it back', async (t) => {
    const s = await setup(t);
    if (!s) return;
    const { page, adminPort } = s;
    await useToken(page, TOKEN);
    await page.getByRole('button', { name: 'Drain b1' }).click();
    await eventually(async () => (await api(adminPort, 'GET', '/api/v1/services/app')).json.servers[0].state === 'draining', 3_000, 'b1 draining in the API');
    await page.locator('[data-service="app"] tr[data-server="b1"][data-state="draining"]').waitFor({ timeout: CONDITION_WAIT });
    await page.getByRole('button', { name: 'Enable b1' }).click();
    await eventually(async () => (await api(adminPort, 'GET', '/api/v1/services/app')).json.servers[0].state === 'enabled', 3_000, 'b1 enabled again');
    // Weight through the keyboard: focus the field, type, tab to the button, press Enter.
    const weight = rowOf(page, 'app', 'b2').getByLabel('Weight for b2');
    await weight.fill('5');
    await weight.press('Tab');
    // A snapshot renders while the focus is on the button: the typed weight must outlive it.
    const status = page.getByText(/^live · /);
    const shown = await status.textContent();
    await eventually(async () => (await status.textContent()) !== shown, CONDITION_WAIT, 'a snapshot rendered with the focus on Set weight', 100);
    await page.keyboard.press('Enter');
    await eventually(async () => (await api(adminPort, 'GET', '/api/v1/services/app')).json.servers[1].weight === 5, 3_000, 'b2 weight 5');
    // The blocklist: add one, see it, remove it.
    await page.getByLabel('Address or CIDR').fill('198.51.100.0/24');
    await page.getByLabel('Reason').fill('dashboard test');
    await page.getByRole('button', { name: 'Block', exact: true }).click();
    await page.getByRole('button', { name: 'Unblock 198.51.100.0/24' }).click();
    await eventually(async () => (await api(adminPort, 'GET', '/api/v1/blocklist')).json.entries.length === 0, 3_000, 'unblocked again');
    assert.deepEqual(s.pageErrors, []);
  });

  test('a wrong token is refused with a visible message and changes nothing', async (t) => {
    const s = await setup(t);
    if (!s) return;
    const { page, adminPort } = s;
    await useToken(page, 'wrong-token-wrong-token');
    await page.getByRole('button', { name: 'Drain b1' }).click();
    // The same alert line first says the token was kept: wait for it to report the refusal.
    const message = page.getByRole('alert').filter({ hasText: /refused \(401/ });
    await message.waitFor({ timeout: CONDITION_WAIT });
    assert.match((await message.textContent()) ?? '', /Nothing was changed/);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}wrong-token.png` });
    const servers = (await api(adminPort, 'GET', '/api/v1/services/app')).json.servers;
    assert.deepEqual(
      servers.map((x: { state: string; weight: number }) => [x.state, x.weight]),
      [
        ['enabled', 1],
        ['enabled', 1],
      ],
    );
    assert.equal(await page.evaluate(() => sessionStorage.getItem('velocity-admin-token')), null, 'the refused token is forgotten');
    // Without any token, an action asks for one and sends nothing.
    await page.getByRole('button', { name: 'Drain b1' }).click();
    await page.getByText('Enter the admin token first').waitFor();
    assert.equal((await api(adminPort, 'GET', '/api/v1/services/app')).json.servers[0].state, 'enabled');
  });

  test('markup in a request path and a blocklist reason is shown as text; no script runs', async (t) => {
    const s = await setup(t);
    if (!s) return;
    const { page, velocity, adminPort } = s;
    const evil = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">';
    const status = await rawGet(velocity.address.port, `/${evil.replace(/ /g, '%20')}`);
    assert.ok(status > 0, 'the request with markup in its path was answered');
    assert.equal((await api(adminPort, 'POST', '/api/v1/blocklist', { cidr: '203.0.113.9', reason: evil })).status, 201);
    await page.getByRole('button', { name: 'Show' }).click();
    await page.locator('#logs-table td.path', { hasText: '<script>window.__pwned=1</script>' }).first().waitFor({ timeout: CONDITION_WAIT });
    await page.locator('#block-table td', { hasText: evil }).waitFor({ timeout: CONDITION_WAIT });
    assert.equal(await page.evaluate('window.__pwned'), undefined);
    assert.equal(await page.locator('img').count(), 0, 'no element was made from the data');
    assert.equal(await page.locator('script').count(), 1, 'only the page’s own module script');
  });

  test('a dropped stream shows "disconnected — retrying" and recovers by itself', async (t) => {
    const s = await setup(t, { viaForwarder: true });
    if (!s) return;
    const { page, forwarder } = s;
    forwarder?.cut();
    await page.getByText('disconnected — retrying').waitFor({ timeout: CONDITION_WAIT });
    assert.equal(await page.locator('body').getAttribute('data-connection'), 'down');
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}disconnected.png` });
    // A few failed reconnects while the admin listener is unreachable.
    await eventually(() => (forwarder?.refused ?? 0) >= 2, CONDITION_WAIT, 'the page retried twice and was refused', 100);
    forwarder?.resume();
    await page.locator('body[data-connection="live"]').waitFor({ timeout: CONDITION_WAIT });
    await page.getByText(/^live · /).waitFor({ timeout: CONDITION_WAIT });
  });
});

describe('dashboard off loopback', () => {
  test('when reads need the token, the page asks for it, then streams with it', async (t) => {
    const browser = await chromiumFor(t);
    if (!browser) return;
    const [b1] = await startBackends(t, 1);
    const velocity = await startInProcess(t, `listen: "127.0.0.1:0"\nadmin: { listen: "0.0.0.0:0", token: ${TOKEN} }\nservices:\n  - name: app\n    servers: [${b1?.url}]\n`);
    const context = await browser.newContext();
    t.after(() => context.close());
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${velocity.adminAddress?.port}/`);
    await page.locator('body[data-connection="auth"]').waitFor({ timeout: CONDITION_WAIT });
    await page.getByText('needs the admin token even to read').waitFor();
    await useToken(page, TOKEN);
    await page.locator('body[data-connection="live"]').waitFor({ timeout: CONDITION_WAIT });
    await page.locator('[data-service="app"] tr[data-health="up"]').waitFor({ timeout: CONDITION_WAIT });
  });

  test('the page is public off loopback, the live stream is not', async (t) => {
    const [b1] = await startBackends(t, 1);
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { listen: "0.0.0.0:0", token: ${TOKEN} }
services:
  - name: app
    servers: [${b1?.url}]
`,
    );
    const port = velocity.adminAddress?.port as number;
    const agent = testAgent(t);
    const page = await get(agent, `http://127.0.0.1:${port}/`);
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
    assert.equal((await get(agent, `http://127.0.0.1:${port}/dashboard/app.js`)).status, 200);
    assert.equal((await get(agent, `http://127.0.0.1:${port}/api/v1/live`)).status, 401);
    assert.equal((await get(agent, `http://127.0.0.1:${port}/api/v1/services`)).status, 401);
    // Without Accept: text/event-stream, one snapshot as JSON (so a plain client is not left hanging).
    const once = await get(agent, `http://127.0.0.1:${port}/api/v1/live`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(once.status, 200);
    assert.equal(JSON.parse(once.body).services[0].servers[0].health.active, 'up');
    const res = await request(`http://127.0.0.1:${port}/api/v1/live`, { headers: { authorization: `Bearer ${TOKEN}`, accept: 'text/event-stream' } });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /text\/event-stream/);
    const first = (await res.body[Symbol.asyncIterator]().next()).value as Buffer;
    assert.match(first.toString(), /^event: snapshot\ndata: \{"at"/);
    res.body.destroy();
  });
});

const rec = (over: Partial<RequestRecord>): RequestRecord => ({
  time: 0,
  requestId: 'r',
  clientIp: '127.0.0.1',
  method: 'GET',
  host: 'h',
  path: '/',
  protocol: 'HTTP/1.1',
  status: 200,
  bytesIn: 0,
  bytesOut: 0,
  service: 'app',
  server: 'a',
  upstreamFirstByteMs: 1,
  upstreamMs: 1,
  totalMs: 1,
  retries: 0,
  queueWaitMs: 0,
  decision: undefined,
  errorCode: undefined,
  userAgent: undefined,
  ...over,
});

describe('dashboard aggregator', () => {
  test('per-interval counts, 5xx share, percentiles, shares and a rolling error window', () => {
    const agg = new LiveAggregator(0, 3);
    for (let i = 1; i <= 100; i++) agg.add(rec({ totalMs: i, server: i <= 75 ? 'a' : 'b', status: i > 95 ? 502 : 200 }));
    agg.add(rec({ service: 'app', server: undefined, status: 429, errorCode: 'RATE_LIMITED' }));
    agg.add(rec({ service: undefined, server: undefined, status: 404, errorCode: 'NO_ROUTE' }));
    agg.add(rec({ service: undefined, server: undefined, status: 403, errorCode: 'IP_DENIED' }));
    const first = agg.tick(2000);
    assert.equal(first.ms, 2000);
    const app = first.services.get('app');
    assert.ok(app);
    assert.equal(app.requests, 101);
    assert.equal(app.errors5xx, 5);
    assert.equal(app.rateLimited, 1);
    assert.equal(first.unrouted, 1);
    assert.equal(first.denied, 1);
    assert.deepEqual(
      [...app.servers],
      [
        ['a', 75],
        ['b', 25],
      ],
    );
    const near = (got: number | null, want: number) => assert.ok(got !== null && Math.abs(got - want) / want < 0.06, `${got} ≈ ${want}`);
    near(app.p50, 50);
    near(app.p95, 95);
    near(app.p99, 99);
    assert.equal(agg.recentErrors('app', 'b'), 5);
    assert.equal(agg.lastError('app', 'b')?.status, 502);
    // The next interval starts empty; the error window forgets after historyTicks intervals.
    const second = agg.tick(3000);
    assert.equal(second.services.size, 0);
    assert.equal(second.ms, 1000);
    agg.tick(4000);
    assert.equal(agg.recentErrors('app', 'b'), 5);
    agg.tick(5000);
    assert.equal(agg.recentErrors('app', 'b'), 0);
  });

  test('the latency histogram stays within 5% and handles the extremes', () => {
    const h = new LatencyHistogram();
    assert.equal(h.quantile(0.5), null);
    h.add(0);
    h.add(1e9);
    assert.equal(h.quantile(0), 0.05);
    assert.ok((h.quantile(1) as number) > 500_000);
    const g = new LatencyHistogram();
    for (let i = 0; i < 10_000; i++) g.add(0.1 + (i % 1000) * 0.7);
    for (const q of [0.5, 0.9, 0.99]) {
      const want = 0.1 + q * 999 * 0.7;
      const got = g.quantile(q) as number;
      assert.ok(Math.abs(got - want) / want < 0.05, `q${q}: ${got} vs ${want}`);
    }
  });
});
