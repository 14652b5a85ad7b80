import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildServer } from '../../src/api/build-server.js';
import { PrivateRedis } from '../helpers/private-redis.js';
import { adminToken, startTestApp, type TestApp } from '../helpers/test-app.js';

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  readonly json: unknown;
}

/** A real HTTP request that fails instead of hanging (the safety net is many times the bound under test). */
async function get(url: string, headers: Record<string, string> = {}, init: RequestInit = {}): Promise<Answer> {
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(10_000), ...init });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

const adminReads = ['/config', '/environments', '/environments/env-r', '/environments/env-r/stats', '/destinations/hook-r', '/health/destinations', '/destinations/hook-r/health', '/dead-letters'];

/**
 * While Redis is unreachable, or reachable but not answering, every request that reads Redis
 * answers at once (503 with a JSON body naming the problem) instead of hanging for the outage,
 * and everything answers normally again when Redis is back.
 */
describe('reads while Redis is unreachable or not answering', () => {
  let app: TestApp;
  let redis: PrivateRedis;

  const readyz = () => get(`${app.url}/readyz`);
  const admin = (path: string) => get(`${app.url}/admin/v1${path}`, { authorization: `Bearer ${adminToken}` });
  const ingest = () =>
    get(`${app.url}/v1/impressions`, {}, {
      method: 'POST',
      headers: { authorization: 'Bearer sdk-r', 'content-type': 'application/json' },
      body: JSON.stringify({ impressions: [{ key: 'user-1', split: 'f', treatment: 'on', time: 1718900000000 }] }),
    });
  const configure = () => app.apply({ environments: [{ id: 'env-r', sdkKeys: ['sdk-r'], destinations: [{ id: 'hook-r', type: 'webhook', settings: { url: 'http://127.0.0.1:1/r' } }] }] });
  const backToNormal = async () => {
    await app.waitForState(async () => (await readyz()).status === 200, 15_000, '/readyz to answer 200');
    const ready = (await readyz()).json as { status: string; checks: unknown };
    assert.deepEqual({ status: ready.status, checks: ready.checks }, { status: 'ready', checks: { redis: 'ok' } });
    assert.equal((await admin('/environments')).status, 200);
    assert.match((await get(`${app.url}/metrics`)).text, /^flagstream_redis_up 1$/m);
  };

  const assertAnswersWithoutRedis = async () => {
    // All at once: while Redis does not answer, each waits for its own bound.
    const [ready, metrics, ingested, ...answers] = await Promise.all([readyz(), get(`${app.url}/metrics`), ingest(), ...adminReads.map(admin)]);
    assert.equal(ready.status, 503);
    assert.deepEqual((ready.json as { notReady: unknown }).notReady, ['redis']);
    assert.equal((ready.json as { status: unknown }).status, 'not ready');
    assert.match((ready.json as { checks: { redis: string } }).checks.redis, /^unreachable/);

    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /^flagstream_redis_up 0$/m);
    assert.match(metrics.text, /^# TYPE flagstream_impressions_received_total counter$/m, 'the process-local metrics are still there');
    assert.doesNotMatch(metrics.text, /^flagstream_queue_jobs\{/m, 'no stale queue counts');

    for (const [index, path] of adminReads.entries()) {
      const answer = answers[index] as Answer;
      assert.equal(answer.status, 503, `${path}: ${answer.text}`);
      assert.equal((answer.json as { error: { code: string } }).error.code, 'FLAGSTREAM_ERR_REDIS', path);
      assert.equal(answer.headers.get('retry-after'), '5', path);
    }
    assert.equal(ingested.status, 503, ingested.text);
  };

  before(async () => {
    redis = await PrivateRedis.start();
    app = await startTestApp({ redisUrl: redis.url, workers: false });
    await configure();
  });
  after(async () => {
    // Closing the test app deletes its keys: Redis must answer.
    await redis.ensureRunning();
    await app.close();
    await redis.kill();
  });

  test('Redis stopped: /readyz says 503 naming redis, /metrics serves what it has, admin reads 503', async () => {
    await backToNormal();
    await redis.kill();
    await app.waitForState(async () => app.ctx.redis.status !== 'ready', 5000, 'the client to notice');
    await assertAnswersWithoutRedis();

    await redis.restart();
    await backToNormal();
  });

  test('/readyz names workers that are not running in a process that runs them', async () => {
    for (const state of ['starting', 'stopped'] as const) {
      const server = buildServer(app.ctx, { logger: false, workers: () => state });
      const answer = await server.inject({ method: 'GET', url: '/readyz' });
      await server.close();
      assert.equal(answer.statusCode, 503);
      assert.deepEqual(answer.json(), { status: 'not ready', notReady: ['workers'], checks: { redis: 'ok', workers: state } });
    }
  });

  test('Redis not answering (connections open): the same answers, after a bounded wait', async () => {
    await configure();
    await backToNormal();
    redis.pause();
    try {
      const ready = await readyz();
      assert.equal(ready.status, 503);
      assert.match((ready.json as { checks: { redis: string } }).checks.redis, /^unreachable \(no answer to PING within \d+ ms\)$/);
      await assertAnswersWithoutRedis();
    } finally {
      redis.resume();
    }
    await backToNormal();
  });
});
