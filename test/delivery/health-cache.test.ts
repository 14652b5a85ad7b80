import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { adminToken, postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

/**
 * Delivery reads destination health from a per-process cache. An operator's pause (here through
 * the admin API, on the API's own store) must reach that cache at once through the change
 * notice, not after the cache's lifetime (an hour here, so only the notice can do it).
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

  test('a pause and a resume reach the delivery cache through the change notice', async () => {
    assert.equal((await app.ctx.health.current('hook-h')).state, 'healthy', 'read once: now cached');
    const headers = { authorization: `Bearer ${adminToken}` };
    assert.equal((await postJson(`${app.url}/admin/v1/destinations/hook-h/pause`, { reason: 'maintenance' }, headers)).status, 200);
    await app.waitForState(async () => (await app.ctx.health.current('hook-h')).state === 'paused', 5_000, 'the pause in the cache');
    assert.equal((await postJson(`${app.url}/admin/v1/destinations/hook-h/resume`, {}, headers)).status, 200);
    await app.waitForState(async () => (await app.ctx.health.current('hook-h')).state === 'healthy', 5_000, 'the resume in the cache');
  });
});
