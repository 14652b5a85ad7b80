import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Webhook } from 'standardwebhooks';
import type { ConfigurationInput } from '../../src/domain/configuration.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

function configuration(receiverUrl: string, overrides: { labelsEnabled?: boolean } = {}): ConfigurationInput {
  return {
    environments: [
      {
        id: 'env-prod',
        name: 'Production',
        sdkKeys: ['prod-sdk-key'],
        webhookToken: 'prod-webhook-token',
        labelsEnabled: overrides.labelsEnabled ?? true,
        flags: [
          { name: 'new_checkout', trafficType: 'user', trackImpressions: true },
          { name: 'quiet_flag', trafficType: 'user', trackImpressions: false },
        ],
        destinations: [{ id: 'prod-hook', type: 'webhook', settings: { url: `${receiverUrl}/impressions`, secret } }],
      },
      {
        id: 'env-nolabels',
        name: 'No labels',
        sdkKeys: ['nolabels-sdk-key'],
        labelsEnabled: false,
        destinations: [{ id: 'nolabels-hook', type: 'webhook', settings: { url: `${receiverUrl}/nolabels`, secret } }],
      },
    ],
  };
}

const sdk = { authorization: 'Bearer prod-sdk-key' };

describe('the spine: ingest → route → deliver over a signed webhook', () => {
  let app: TestApp;
  let receiver: HttpReceiver;

  before(async () => {
    receiver = await HttpReceiver.start();
    app = await startTestApp();
    await app.apply(configuration(receiver.url));
  });
  after(async () => {
    await app.close();
    await receiver.close();
  });
  beforeEach(() => {
    receiver.requests.length = 0;
  });

  test('native impressions reach the receiver, signed so that standardwebhooks verifies them', async () => {
    const response = await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'user-1', split: 'new_checkout', treatment: 'on', label: 'default rule', time: 1718900000123, properties: { plan: 'pro' } }] }, sdk);
    assert.equal(response.status, 202);
    await receiver.waitForRequests(1);
    const [request] = receiver.requests;
    assert.ok(request);
    assert.equal(request.url, '/impressions');
    assert.equal(request.headers['content-type'], 'application/json');
    const verified = new Webhook(secret).verify(request.body, request.headers as Record<string, string>) as Record<string, unknown>[];
    assert.equal(verified.length, 1);
    const impression = verified[0] as Record<string, unknown>;
    assert.equal(impression.key, 'user-1');
    assert.equal(impression.split, 'new_checkout');
    assert.equal(impression.environmentId, 'env-prod');
    assert.equal(impression.environmentName, 'Production');
    assert.equal(impression.trafficTypeName, 'user');
    assert.equal(impression.label, 'default rule');
    assert.equal(impression.properties, '{"plan":"pro"}');
    assert.equal(impression.id, (response.body as { ids: string[] }).ids[0]);
  });

  test("Split's outgoing webhook (gzipped, token in the query) reaches the receiver", async () => {
    const body = gzipSync(JSON.stringify([{ key: 'user-7', split: 'new_checkout', environmentId: 'split-env', environmentName: 'Prod-Default', treatment: 'off', time: 1718900000500, bucketingKey: 'account-7', label: 'not in split', machineName: 'web-1', machineIp: '10.0.0.5', splitVersionNumber: 1718800000000, sdk: 'nodejs', sdkVersion: '11.11.0' }]));
    const response = await fetch(`${app.url}/webhooks/split/impressions?token=prod-webhook-token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    assert.equal(response.status, 200);
    await receiver.waitForRequests(1);
    const [impression] = receiver.impressions();
    assert.equal(impression?.key, 'user-7');
    assert.equal(impression?.bucketingKey, 'account-7');
    assert.equal(impression?.machineName, 'web-1');
    assert.equal(impression?.environmentId, 'env-prod');
    assert.equal(impression?.sdkVersion, '11.11.0');
  });

  test('the webhook also takes the token as a Bearer header, and Content-Encoding: gzip', async () => {
    const body = gzipSync(JSON.stringify([{ key: 'user-8', split: 'new_checkout', treatment: 'on', time: 1718900000600 }]));
    const response = await fetch(`${app.url}/webhooks/split/impressions`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', authorization: 'Bearer prod-webhook-token' }, body });
    assert.equal(response.status, 200);
    await receiver.waitForRequests(1);
    assert.equal(receiver.impressions()[0]?.key, 'user-8');
  });

  test('impressions of a tracking-off flag never reach the receiver and are counted', async () => {
    const before = (await app.ctx.stats.flagStats('env-prod')).find((f) => f.flag === 'quiet_flag')?.dropped.tracking_off ?? 0;
    const routed = app.completedRoutings.length;
    const response = await postJson(
      `${app.url}/v1/impressions`,
      {
        impressions: [
          { key: 'user-20', split: 'quiet_flag', treatment: 'on', time: 1718900001000 },
          { key: 'user-21', split: 'new_checkout', treatment: 'on', time: 1718900001000 },
          { key: 'user-22', split: 'quiet_flag', treatment: 'off', time: 1718900001000 },
        ],
      },
      sdk,
    );
    assert.equal(response.status, 202);
    await app.waitForRoutings(routed + 1);
    await receiver.waitForRequests(1);
    assert.deepEqual(receiver.impressions().map((i) => i.split), ['new_checkout']);
    const quiet = (await app.ctx.stats.flagStats('env-prod')).find((f) => f.flag === 'quiet_flag');
    assert.equal((quiet?.dropped.tracking_off ?? 0) - before, 2);
    const metric = await app.ctx.metrics.impressionsDropped.get();
    assert.ok((metric.values.find((v) => v.labels.reason === 'tracking_off')?.value ?? 0) >= 2);
  });

  test('labels are removed where the environment has labelsEnabled: false', async () => {
    const response = await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'user-30', split: 'any_flag', treatment: 'on', label: 'in segment beta', time: 1718900002000 }] }, { authorization: 'Bearer nolabels-sdk-key' });
    assert.equal(response.status, 202);
    await receiver.waitForRequests(1);
    const [request] = receiver.requests;
    assert.equal(request?.url, '/nolabels');
    const [impression] = receiver.impressions();
    assert.equal(impression?.key, 'user-30');
    assert.equal('label' in (impression ?? {}), false);
  });

  test('turning tracking off through the admin API applies to running workers without a restart', async () => {
    const reloaded = new Promise<void>((resolve) => app.ctx.config.onChange((snapshot) => snapshot.environments.get('env-prod')?.flags.get('new_checkout')?.trackImpressions === false && resolve()));
    const toggled = await app.admin('PATCH', '/environments/env-prod/flags/new_checkout', { trackImpressions: false });
    assert.equal(toggled.status, 200);
    assert.deepEqual(toggled.body, { name: 'new_checkout', trafficType: 'user', trackImpressions: false });
    await reloaded;
    const routed = app.completedRoutings.length;
    await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'user-40', split: 'new_checkout', treatment: 'on', time: 1718900003000 }] }, sdk);
    await app.waitForRoutings(routed + 1);
    assert.deepEqual(app.completedRoutings.at(-1)?.result, { routed: 0, dropped: 1, destinations: 0 });

    const back = new Promise<void>((resolve) => app.ctx.config.onChange((snapshot) => snapshot.environments.get('env-prod')?.flags.get('new_checkout')?.trackImpressions === true && resolve()));
    assert.equal((await app.admin('PATCH', '/environments/env-prod/flags/new_checkout', { trackImpressions: true })).status, 200);
    await back;
    await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'user-41', split: 'new_checkout', treatment: 'on', time: 1718900003001 }] }, sdk);
    await receiver.waitForRequests(1);
    assert.equal(receiver.impressions()[0]?.key, 'user-41');
  });

  test('the same impression sent twice keeps the same id (destinations dedupe on it)', async () => {
    const body = { impressions: [{ key: 'user-50', split: 'new_checkout', treatment: 'on', time: 1718900004000 }] };
    const first = await postJson(`${app.url}/v1/impressions`, body, sdk);
    const second = await postJson(`${app.url}/v1/impressions`, body, sdk);
    assert.deepEqual((first.body as { ids: string[] }).ids, (second.body as { ids: string[] }).ids);
  });
});
