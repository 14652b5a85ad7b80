import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { createHealthStore } from '../../src/stores/health-store.js';
import { adminToken, postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

/**
 * Delivery reads destination health from a per-process cache. An operator's pause must reach it
 * at once: in the same process directly (the API's store shares the cache), from another process
 * through the change notice, not after the cache's lifetime (a minute here, so only the notice
 * can do it within the test's wait).
 */
describe('cached destination health', () => {
  let app: TestApp;
  beforeEach(async () => {
    app = await startTestApp({ workers: false, env: { FLAGSTREAM_HEALTH_CACHE_MS: '60000' } });
    await app.apply({
      environments: [{ id: 'env-h', sdkKeys: ['sdk-h'], destinations: [{ id: 'hook-h', type: 'webhook', settings: { url: 'http://127.0.0.1:9/h' } }] }],
    });
  });
  afterEach(async () => app.close());

  test('a pause and a resume in another process reach the delivery cache through the change notice', async () => {
    assert.equal((await app.ctx.health.current('hook-h')).state, 'healthy', 'read once: now cached');
    // Another process's store: its own cache, the same Redis and channel.
    const elsewhere = createHealthStore({ redis: app.ctx.redis, keys: app.ctx.keys });
    await elsewhere.pause('hook-h', Date.now(), 'maintenance');
    await app.waitForState(async () => (await app.ctx.health.current('hook-h')).state === 'paused', 5_000, 'the pause in the cache');
    await elsewhere.resume('hook-h', Date.now());
    await app.waitForState(async () => (await app.ctx.health.current('hook-h')).state === 'healthy', 5_000, 'the resume in the cache');
  });

  test("a pause and a resume through this process's API reach its delivery cache", async () => {
    assert.equal((await app.ctx.health.current('hook-h')).state, 'healthy', 'read once: now cached');
    const headers = { authorization: `Bearer ${adminToken}` };
    assert.equal((await postJson(`${app.url}/admin/v1/destinations/hook-h/pause`, { reason: 'maintenance' }, headers)).status, 200);
    await app.waitForState(async () => (await app.ctx.health.current('hook-h')).state === 'paused', 5_000, 'the pause in the cache');
    assert.equal((await postJson(`${app.url}/admin/v1/destinations/hook-h/resume`, {}, headers)).status, 200);
    await app.waitForState(async () => (await app.ctx.health.current('hook-h')).state === 'healthy', 5_000, 'the resume in the cache');
  });
});
