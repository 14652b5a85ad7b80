import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FullstoryEvent } from '../../src/connectors/fullstory/fullstory-connector.js';
import type { MparticleBatch } from '../../src/connectors/mparticle/mparticle-connector.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

/**
 * mParticle and Fullstory destinations through the whole pipeline (ingest → route → deliver), each
 * pointed by `baseUrl` at a real local HTTP server that answers as the vendor does.
 */
describe('mparticle and fullstory destinations in the pipeline', () => {
  let app: TestApp;
  let receiver: HttpReceiver;

  before(async () => {
    receiver = await HttpReceiver.start();
    receiver.respond = (request) => (request.url === '/mp/v2/bulkevents' ? { status: 202 } : { status: 200, headers: { 'content-type': 'application/json' }, body: '{}' });
    app = await startTestApp();
    await app.apply({
      environments: [
        {
          id: 'env-prod',
          name: 'Production',
          sdkKeys: ['prod-sdk-key'],
          flags: [
            { name: 'new_checkout', trafficType: 'user', trackImpressions: true },
            { name: 'quiet_flag', trafficType: 'user', trackImpressions: false },
          ],
          destinations: [
            { id: 'prod-mparticle', type: 'mparticle', settings: { apiKey: 'mp-key', apiSecret: 'mp-secret', baseUrl: `${receiver.url}/mp` } },
            { id: 'prod-fullstory', type: 'fullstory', settings: { apiKey: 'na1.fs-key', baseUrl: `${receiver.url}/fs` } },
          ],
        },
      ],
    });
  });
  after(async () => {
    await app.close();
    await receiver.close();
  });

  test('impressions of a tracking-off flag are never sent to mParticle or Fullstory; the others are', async () => {
    const response = await postJson(
      `${app.url}/v1/impressions`,
      {
        impressions: [
          { key: 'user-20', split: 'quiet_flag', treatment: 'on', time: 1718900001000 },
          { key: 'user-21', split: 'new_checkout', treatment: 'on', label: 'default rule', time: 1718900001000 },
          { key: 'user-22', split: 'quiet_flag', treatment: 'off', time: 1718900001000 },
        ],
      },
      { authorization: 'Bearer prod-sdk-key' },
    );
    assert.equal(response.status, 202);
    const accepted = (response.body as { ids: string[] }).ids[1];

    await app.waitForRoutings(1);
    await app.waitForDeliveries(1, undefined, 'prod-mparticle');
    await app.waitForDeliveries(1, undefined, 'prod-fullstory');

    // Every delivery job has completed: whatever was going to be sent has been.
    assert.deepEqual(receiver.requests.map((r) => r.url).sort(), ['/fs/v2/events', '/mp/v2/bulkevents']);
    const bulk = receiver.requests.find((r) => r.url === '/mp/v2/bulkevents');
    const event = receiver.requests.find((r) => r.url === '/fs/v2/events');
    const batches = JSON.parse(bulk?.body ?? '[]') as MparticleBatch[];
    assert.deepEqual(
      batches.map((b) => [b.source_request_id, b.user_identities, b.events[0].data.custom_attributes.split]),
      [[accepted, { customer_id: 'user-21' }, 'new_checkout']],
    );
    assert.equal(bulk?.headers.authorization, `Basic ${Buffer.from('mp-key:mp-secret').toString('base64')}`);
    const created = JSON.parse(event?.body ?? '{}') as FullstoryEvent;
    assert.equal(created.user.uid, 'user-21');
    assert.equal(created.properties.split, 'new_checkout');
    assert.equal(event?.headers.authorization, 'Basic na1.fs-key');
    assert.ok(String(event?.headers['idempotency-key']).startsWith(`${accepted}-`));
  });
});
