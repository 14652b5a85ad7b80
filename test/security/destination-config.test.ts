import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runFlagstream } from '../helpers/cli.js';
import { createTestRedis, deleteKeys, testRedisUrl, uniquePrefix } from '../helpers/redis.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

interface ErrorBody {
  error: { code: string; message: string; field?: string; details?: { field: string; message: string }[] };
}

describe('destinations are refused at configuration time unless allowlisted', () => {
  let app: TestApp;

  before(async () => {
    // As in production: nothing allowlisted.
    app = await startTestApp({ workers: false, env: { FLAGSTREAM_DESTINATION_ALLOWLIST: '' } });
    await app.admin('PUT', '/environments/env-c', { sdkKeys: ['sdk-c'] });
  });
  after(() => app.close());

  test('the admin API answers 400 naming the field, for every way of writing a private host, and stores nothing', async () => {
    const hosts = [
      'http://10.0.0.5/hook',
      'http://169.254.169.254/latest/meta-data',
      'http://[::1]:8080/',
      'http://[::ffff:10.0.0.5]/',
      'http://[64:ff9b::7f00:1]/',
      'http://[64:ff9b::a00:5]/',
      'http://2130706433/',
      'http://0x7f.1/',
      'http://192.0.2.1/',
      'http://100.64.1.1/',
      'http://localhost.:9000/',
      'http://metadata.google.internal/computeMetadata/v1/',
      'http://collector:8080/',
    ];
    for (const [index, url] of hosts.entries()) {
      const created = await app.admin('POST', '/environments/env-c/destinations', { id: `bad-${index}`, type: 'webhook', settings: { url } });
      assert.equal(created.status, 400, url);
      const body = created.body as ErrorBody;
      assert.equal(body.error.code, 'FLAGSTREAM_ERR_VALIDATION', url);
      assert.equal(body.error.field, 'settings.url', url);
      assert.match(body.error.message, /FLAGSTREAM_DESTINATION_ALLOWLIST/, url);
    }
    assert.deepEqual((await app.admin('GET', '/environments/env-c/destinations')).body, { destinations: [] });
  });

  test('every URL setting is checked, whatever the connector calls it, on create, replace and merge', async () => {
    const amplitude = await app.admin('POST', '/environments/env-c/destinations', { id: 'amp', type: 'amplitude', settings: { apiKey: 'k'.repeat(32), baseUrl: 'http://10.1.1.1/' } });
    assert.equal((amplitude.body as ErrorBody).error.field, 'settings.baseUrl');
    const s3 = await app.admin('POST', '/environments/env-c/destinations', { id: 's3', type: 's3', settings: { bucket: 'b', endpoint: 'http://192.168.1.10:9000' } });
    assert.equal((s3.body as ErrorBody).error.field, 'settings.endpoint');

    assert.equal((await app.admin('POST', '/environments/env-c/destinations', { id: 'hook-ok', type: 'webhook', settings: { url: 'https://hooks.example.com/x' } })).status, 201);
    const patched = await app.admin('PATCH', '/destinations/hook-ok', { settings: { url: 'http://172.16.0.1/' } });
    assert.equal(patched.status, 400);
    assert.equal((patched.body as ErrorBody).error.field, 'settings.url');
    const replaced = await app.admin('PUT', '/destinations/hook-ok', { type: 'webhook', settings: { url: 'http://[fd00::1]/' } });
    assert.equal(replaced.status, 400);
    assert.equal(((await app.admin('GET', '/destinations/hook-ok')).body as { settings: { url: string } }).settings.url, 'https://hooks.example.com/x');
  });

  test('apply (the API and the service) reports each refused destination with its full path; allowlisted ones pass', async () => {
    // The usual test setting: 127.0.0.1 (local receivers) is allowlisted, nothing else.
    const loopback = await startTestApp({ workers: false });
    const config = {
      environments: [
        {
          id: 'env-apply',
          destinations: [
            { id: 'fine', type: 'webhook', settings: { url: 'https://hooks.example.com/ok' } },
            { id: 'local-receiver', type: 'webhook', settings: { url: 'http://127.0.0.1:9000/hooks' } },
            { id: 'loopback-name', type: 'webhook', settings: { url: 'http://localhost:9000/hooks' } },
            { id: 'private', type: 'webhook', settings: { url: 'http://10.9.8.7/hooks' } },
          ],
        },
      ],
    };
    const allowed = await startTestApp({ workers: false, env: { FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1,10.0.0.0/8' } });
    try {
      const applied = await loopback.admin('POST', '/config/apply', config);
      assert.equal(applied.status, 400);
      const body = applied.body as ErrorBody;
      assert.equal(body.error.field, 'environments[0].destinations[3].settings.url');
      assert.match(body.error.message, /10\.9\.8\.7.*private/);
      await assert.rejects(loopback.apply(config as never), /environments\[0\]\.destinations\[3\]\.settings\.url/);
      assert.equal((await loopback.admin('GET', '/environments/env-apply')).status, 404, 'nothing of a refused apply is stored');

      const strict = await app.admin('POST', '/config/apply', config);
      assert.deepEqual(
        (strict.body as ErrorBody).error.details?.map((d) => d.field),
        [1, 2, 3].map((i) => `environments[0].destinations[${i}].settings.url`),
      );

      assert.equal((await allowed.admin('POST', '/config/apply', config)).status, 200);
    } finally {
      await allowed.close();
      await loopback.close();
    }
  });
});

describe('flagstream apply refuses a private destination', () => {
  const prefix = uniquePrefix('cfgguard');
  const redis = createTestRedis();
  after(async () => {
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  test('with a message naming the field and a non-zero exit, unless FLAGSTREAM_DESTINATION_ALLOWLIST names it', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'flagstream-guard-')), 'private.yaml');
    writeFileSync(file, 'environments:\n  - id: env-cli\n    destinations:\n      - { id: meta, type: webhook, settings: { url: "http://169.254.169.254/latest" } }\n');
    const env = { REDIS_URL: testRedisUrl, FLAGSTREAM_REDIS_PREFIX: prefix };
    const refused = await runFlagstream(['apply', '-f', file], env);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /environments\[0\]\.destinations\[0\]\.settings\.url/);
    assert.match(refused.stderr, /169\.254\.169\.254.*link-local.*FLAGSTREAM_DESTINATION_ALLOWLIST/);
    const allowed = await runFlagstream(['apply', '-f', file], { ...env, FLAGSTREAM_DESTINATION_ALLOWLIST: '169.254.169.254' });
    assert.equal(allowed.code, 0, allowed.stderr);
  });
});
