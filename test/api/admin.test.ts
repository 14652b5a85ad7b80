import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

const sentinel = 'whsec_U0VOVElORUwtU0VDUkVULTEyMzQ1Njc4OQ==';

describe('admin API /admin/v1', () => {
  let app: TestApp;

  before(async () => {
    app = await startTestApp({ workers: false, env: { FLAGSTREAM_ENCRYPTION_KEY: randomBytes(32).toString('base64') } });
  });
  after(() => app.close());

  test('answers 401 without the admin token', async () => {
    const response = await app.server.inject({ method: 'GET', url: '/admin/v1/environments' });
    assert.equal(response.statusCode, 401);
    const wrong = await app.server.inject({ method: 'GET', url: '/admin/v1/environments', headers: { authorization: 'Bearer nope' } });
    assert.equal(wrong.statusCode, 401);
  });

  test('creates an environment, a flag and a destination; secrets are redacted on read and encrypted at rest', async () => {
    const created = await app.admin('PUT', '/environments/env-a', { name: 'A', sdkKeys: ['sdk-key-a'], webhookToken: 'tok-a' });
    assert.equal(created.status, 201);
    assert.deepEqual((created.body as { sdkKeys: string[] }).sdkKeys, ['[redacted]']);

    const flag = await app.admin('PUT', '/environments/env-a/flags/new_checkout', { trackImpressions: false });
    assert.equal(flag.status, 201);
    assert.deepEqual(flag.body, { name: 'new_checkout', trafficType: 'user', trackImpressions: false });

    const destination = await app.admin('POST', '/environments/env-a/destinations', { id: 'hook-a', type: 'webhook', settings: { url: 'https://hooks.example.com/a', secret: sentinel, headers: { authorization: 'Bearer downstream' } } });
    assert.equal(destination.status, 201);
    const read = await app.admin('GET', '/destinations/hook-a');
    assert.equal(read.status, 200);
    const settings = (read.body as { settings: Record<string, unknown> }).settings;
    assert.equal(settings.secret, '[redacted]');
    assert.deepEqual(settings.headers, { authorization: '[redacted]' });
    assert.equal(settings.url, 'https://hooks.example.com/a');

    const raw = await app.ctx.redis.hget(app.ctx.keys.configEnvironments, 'env-a');
    assert.ok(raw);
    assert.ok(!raw.includes(sentinel) && !raw.includes('sdk-key-a') && !raw.includes('downstream'), 'secrets are encrypted at rest');
    const everything = JSON.stringify((await app.admin('GET', '/config')).body);
    assert.ok(!everything.includes(sentinel) && !everything.includes('sdk-key-a'));
  });

  test('updates keep redacted secrets, validate settings with the field path, and enable/disable', async () => {
    const patched = await app.admin('PATCH', '/destinations/hook-a', { settings: { url: 'https://hooks.example.com/b', secret: '[redacted]' } });
    assert.equal(patched.status, 200);
    const stored = await app.ctx.configStore.getEnvironment('env-a');
    const hook = stored?.destinations.find((d) => d.id === 'hook-a');
    assert.equal(hook?.settings.secret, sentinel);
    assert.equal(hook?.settings.url, 'https://hooks.example.com/b');

    const invalid = await app.admin('PATCH', '/destinations/hook-a', { settings: { url: 'ftp://nope' } });
    assert.equal(invalid.status, 400);
    assert.equal((invalid.body as { error: { field: string } }).error.field, 'settings.url');

    const disabled = await app.admin('POST', '/destinations/hook-a/disable');
    assert.equal((disabled.body as { enabled: boolean }).enabled, false);
    const enabled = await app.admin('POST', '/destinations/hook-a/enable');
    assert.equal((enabled.body as { enabled: boolean }).enabled, true);
  });

  test('refuses a duplicate destination id and answers 404 for unknown ones', async () => {
    await app.admin('PUT', '/environments/env-b', { sdkKeys: ['sdk-key-b'] });
    const duplicate = await app.admin('POST', '/environments/env-b/destinations', { id: 'hook-a', type: 'webhook', settings: { url: 'https://x.example.com' } });
    assert.equal(duplicate.status, 409);
    assert.equal((await app.admin('GET', '/destinations/nope')).status, 404);
    assert.equal((await app.admin('DELETE', '/environments/nope')).status, 404);
  });

  test('deletes a destination and a flag', async () => {
    assert.equal((await app.admin('DELETE', '/destinations/hook-a')).status, 204);
    assert.equal((await app.admin('GET', '/destinations/hook-a')).status, 404);
    assert.equal((await app.admin('DELETE', '/environments/env-a/flags/new_checkout')).status, 204);
    assert.deepEqual(((await app.admin('GET', '/environments/env-a/flags')).body as { flags: unknown[] }).flags, []);
  });
});
