import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { loadPlugins } from '../../src/connectors/load-plugins.js';
import { builtInConnectors, ConnectorRegistry } from '../../src/connectors/registry.js';
import { runFlagstream } from '../helpers/cli.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { createTestRedis, deleteKeys, testRedisUrl, uniquePrefix } from '../helpers/redis.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

const pluginPath = fileURLToPath(new URL('../fixtures/plugins/crm-connector.js', import.meta.url));

describe('connector plugins', () => {
  let app: TestApp;
  let crm: HttpReceiver;

  before(async () => {
    crm = await HttpReceiver.start();
    app = await startTestApp({ registry: new ConnectorRegistry([...builtInConnectors, ...(await loadPlugins([pluginPath]))]) });
    await app.apply({
      plugins: [pluginPath],
      environments: [{ id: 'env-p', sdkKeys: ['sdk-p'], destinations: [{ id: 'crm', type: 'my-crm', settings: { endpoint: `${crm.url}/activities`, apiToken: 'crm-token-secret' } }] }],
    });
  });
  after(async () => {
    await app.close();
    await crm.close();
  });

  test('a plugin loaded from a local file delivers through the core like a built-in connector', async () => {
    const response = await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'contact-1', split: 'new_checkout', treatment: 'on', time: 1718900000000 }] }, { authorization: 'Bearer sdk-p' });
    await crm.waitForRequests(1);
    const [request] = crm.requests;
    assert.equal(request?.headers.authorization, 'Bearer crm-token-secret');
    assert.deepEqual(JSON.parse(request?.body ?? '{}'), {
      activities: [{ contact: 'contact-1', type: 'feature_flag', flag: 'new_checkout', variant: 'on', at: '2024-06-20T16:13:20.000Z', idempotencyKey: (response.body as { ids: string[] }).ids[0] }],
    });
    const read = await app.admin('GET', '/destinations/crm');
    assert.equal((read.body as { settings: { apiToken: string } }).settings.apiToken, '[redacted]');
  });

  test('a broken plugin is refused with a clear message', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flagstream-plugin-'));
    writeFileSync(join(dir, 'empty.mjs'), 'export const nothing = 1;\n');
    writeFileSync(join(dir, 'half.mjs'), "export const connector = { type: 'half' };\n");
    await assert.rejects(loadPlugins(['./empty.mjs'], dir), /exports no `connector` or `connectors`/);
    await assert.rejects(loadPlugins(['./half.mjs'], dir), /lacks type, settingsSchema, limits/);
    await assert.rejects(loadPlugins(['flagstream-connector-that-does-not-exist'], dir), /cannot find it.*install the package or fix the path/);
  });
});

describe('flagstream connectors, destinations test, and plugins from the configuration file', () => {
  const prefix = uniquePrefix('tools');
  const redis = createTestRedis();
  const env: Record<string, string> = { REDIS_URL: testRedisUrl, FLAGSTREAM_REDIS_PREFIX: prefix, FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1' };
  let receiver: HttpReceiver;
  const configFile = fileURLToPath(new URL('../fixtures/plugins/flagstream.yaml', import.meta.url));

  before(async () => {
    receiver = await HttpReceiver.start();
    Object.assign(env, { HOOK_URL: `${receiver.url}/t`, CRM_URL: `${receiver.url}/crm` });
  });
  after(async () => {
    await receiver.close();
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  test('apply records the plugin; later commands load it from Redis', async () => {
    const applied = await runFlagstream(['apply', '-f', configFile], env);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /\+ plugin .*crm-connector\.js/);
    const listed = await runFlagstream(['connectors', '--json'], env);
    const connectors = (JSON.parse(listed.stdout) as { connectors: { type: string; settings: { required?: string[] }; secretSettings: string[]; limits: { maxItemsPerRequest: number }; regions: Record<string, string> }[] }).connectors;
    // Every built-in connector, plus the plugin, sorted by type.
    assert.deepEqual(connectors.map((c) => c.type), [...builtInConnectors.map((c) => c.type), 'my-crm'].sort((a, b) => a.localeCompare(b)));
    assert.ok(connectors.some((c) => c.type === 'mparticle') && connectors.some((c) => c.type === 'fullstory'));
    const crm = connectors.find((c) => c.type === 'my-crm');
    assert.deepEqual(crm?.settings.required, ['endpoint', 'apiToken']);
    assert.deepEqual(crm?.secretSettings, ['apiToken']);
    assert.equal(crm?.limits.maxItemsPerRequest, 50);
    assert.ok(Object.keys(connectors.find((c) => c.type === 'amplitude')?.regions ?? {}).length >= 2, 'amplitude offers region presets');
    const table = await runFlagstream(['connectors'], env);
    assert.match(table.stdout, /^webhook\s+Outgoing webhook\s+500/m);
  });

  test('destinations test sends one marked impression and prints the answer; a failure exits 1', async () => {
    const ok = await runFlagstream(['destinations', 'test', 'hook-t'], env);
    assert.equal(ok.code, 0, ok.stderr + ok.stdout);
    assert.match(ok.stdout, /sent a test impression \(flag flagstream_test_event, key flagstream-test/);
    assert.match(ok.stdout, /outcome: delivered/);
    assert.match(ok.stdout, /answer: \{"status":200/);
    const [impression] = receiver.impressions();
    assert.equal(impression?.split, 'flagstream_test_event');
    assert.equal(impression?.properties, '{"flagstreamTest":true}');

    receiver.respond = () => ({ status: 401, body: 'bad token' });
    const failed = await runFlagstream(['destinations', 'test', 'crm-t', '--json'], env);
    assert.equal(failed.code, 1);
    const report = JSON.parse(failed.stdout) as { outcome: string; reason: string; response: { status: number; body: string } };
    assert.equal(report.outcome, 'rejected');
    assert.equal(report.response.status, 401);
    assert.equal(report.response.body, 'bad token');
  });
});
