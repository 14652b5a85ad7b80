import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => 50, maxRetriesPerRequest: null });
  probe.on('error', () => undefined);
  await probe.connect().catch(() => undefined);
  await probe.ping();
  probe.disconnect();
  return child;
}

/** With Redis gone, ingest answers 503 at once (nothing is half-accepted) and recovers with it. */
describe('ingest while Redis is unreachable', () => {
  let app: TestApp;
  let redis: ChildProcess;
  let port: number;
  let receiver: HttpReceiver;

  before(async () => {
    port = await freePort();
    redis = await startRedis(port);
    receiver = await HttpReceiver.start();
    app = await startTestApp({ redisUrl: `redis://127.0.0.1:${port}` });
    await app.apply({ environments: [{ id: 'env-o', sdkKeys: ['sdk-o'], destinations: [{ id: 'hook-o', type: 'webhook', settings: { url: `${receiver.url}/o`, maxBatchWait: 0 } }] }] });
  });
  after(async () => {
    await app.close();
    redis.kill('SIGKILL');
    await receiver.close();
  });

  test('answers 503 with Retry-After while Redis is down, and accepts again once it is back', async () => {
    const body = { impressions: [{ key: 'user-1', split: 'f', treatment: 'on', time: 1718900000000 }] };
    const exited = new Promise((resolve) => redis.once('exit', resolve));
    redis.kill('SIGKILL');
    await exited;
    await app.waitForState(async () => app.ctx.redis.status !== 'ready', 5000, 'the client to notice');
    const down = await postJson(`${app.url}/v1/impressions`, body, { authorization: 'Bearer sdk-o' });
    assert.equal(down.status, 503);
    assert.equal(down.headers.get('retry-after'), '5');
    assert.deepEqual(down.body, { error: { code: 'FLAGSTREAM_ERR_REDIS', message: 'the queue (Redis) is unreachable; nothing was accepted, retry later' } });

    // A fresh, empty Redis on the same port (the old one kept nothing): configure again, then ingest.
    redis = await startRedis(port);
    await app.waitForState(async () => app.ctx.redis.status === 'ready', 5000, 'the client to reconnect');
    await app.apply({ environments: [{ id: 'env-o', sdkKeys: ['sdk-o'], destinations: [{ id: 'hook-o', type: 'webhook', settings: { url: `${receiver.url}/o`, maxBatchWait: 0 } }] }] });
    const up = await postJson(`${app.url}/v1/impressions`, body, { authorization: 'Bearer sdk-o' });
    assert.equal(up.status, 202);
    await receiver.waitForRequests(1, 10_000);
  });
});
