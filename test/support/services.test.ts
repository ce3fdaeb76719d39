/** The real services the suite relies on start, answer, and restart on these machines. */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { describe, test } from 'node:test';
import pg from 'pg';
import { request } from 'undici';
import { launchChromium } from './chromium.ts';
import { buildBusyboxImage, containerIp, createInternalNetwork, runContainer, startDockerd } from './docker.ts';
import { createHosts } from './netns.ts';
import { startPostgres } from './postgres.ts';
import { startRedis } from './redis.ts';
import { watchOutput } from './velocity.ts';

function canConnect(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.setTimeout(timeoutMs, () => {
      s.destroy();
      resolve(false);
    });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('real services for the tests', () => {
  test('redis-server answers PING and comes back on the same port after a stop', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    assert.ok(await canConnect('127.0.0.1', redis.port, 500));
    await redis.stop();
    assert.equal(await canConnect('127.0.0.1', redis.port, 500), false);
    await redis.start();
    assert.ok(await canConnect('127.0.0.1', redis.port, 500));
  });

  test('PostgreSQL accepts queries and survives a stop and start', async (t) => {
    const db = await startPostgres(t);
    if (!db) return;
    const query = async () => {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      const { rows } = await client.query('select 1 as one');
      await client.end();
      return rows[0].one;
    };
    assert.equal(await query(), 1);
    await db.stop();
    await assert.rejects(query());
    await db.start();
    assert.equal(await query(), 1);
  });

  test('a private dockerd runs a busybox container reachable on an internal network', async (t) => {
    const d = await startDockerd(t);
    if (!d) return;
    await buildBusyboxImage(d, 'localhost/velocity-services:test');
    await createInternalNetwork(d, 'vsvc', '10.202.9.0/24');
    const id = await runContainer(d, { name: 'svc1', image: 'localhost/velocity-services:test', network: 'vsvc', labels: {} });
    const ip = await containerIp(d, id, 'vsvc');
    assert.match(ip, /^10\.202\.9\.\d+$/);
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      try {
        const r = await request(`http://${ip}:8080/health`, { headersTimeout: 1000 });
        status = r.statusCode;
        await r.body.text();
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.equal(status, 200);
  });

  test('a network-namespace host serves on its own IP and vanishes when its link goes down', async (t) => {
    const hosts = await createHosts(t, 1);
    if (!hosts) return;
    const host = hosts[0];
    assert.ok(host);
    const server = host.run(process.execPath, ['-e', `require('http').createServer((q,s)=>s.end('hi')).listen(8080,'${host.ip}',()=>console.log('up'))`]);
    t.after(() => server.kill('SIGKILL'));
    await watchOutput(server).waitFor(/up/);
    assert.ok(await canConnect(host.ip, 8080, 1000));
    await host.linkDown();
    assert.equal(await canConnect(host.ip, 8080, 500), false);
    await host.linkUp();
    assert.ok(await canConnect(host.ip, 8080, 2000));
  });

  test('headless Chromium opens a page', async (t) => {
    const browser = await launchChromium(t);
    if (!browser) return;
    const page = await browser.newPage();
    await page.goto('data:text/html,<title>velocity-ok</title>');
    assert.equal(await page.title(), 'velocity-ok');
  });
});
