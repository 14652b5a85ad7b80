import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import nock from 'nock';
import { amplitudeConnector, type AmplitudeSettings, type AmplitudeEvent } from '../../src/connectors/amplitude/amplitude-connector.js';
import type { HttpResponse } from '../../src/connectors/connector.js';
import type { BatchSettlement } from '../../src/delivery/deliver-batch.js';
import type { Impression } from '../../src/domain/impression.js';
import { captureBodies, deliverThrough, useNockedTransport, numberedImpression, numberedImpressions, rejectedIds, sortedIds } from '../helpers/connector-harness.js';

const now = 1_718_900_000_000;
const apiKey = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
const standard = 'https://api2.amplitude.com';

type SentEvent = AmplitudeEvent;
interface SentBody {
  api_key: string;
  events: SentEvent[];
  options: { min_id_length: number };
}

const impression = numberedImpression;
const impressions = numberedImpressions;

const transport = useNockedTransport();

function deliver(raw: Record<string, unknown>, items: readonly Impression[]): Promise<BatchSettlement> {
  return deliverThrough(amplitudeConnector, raw, items, transport(), 'amplitude-prod');
}

const capture = captureBodies<SentBody>;
const ids = sortedIds;


describe('amplitude connector: requests', () => {
  test('sends a batch as the documented HTTP V2 body: api_key, events with identity, insert_id and impression properties, min_id_length 1', async () => {
    const bodies: SentBody[] = [];
    const scope = nock(standard)
      .matchHeader('content-type', 'application/json')
      .post('/2/httpapi', capture(bodies))
      .reply(200, { code: 200, events_ingested: 2, payload_size_bytes: 812, server_upload_time: now });

    const user = impression(1, { key: 'user-42', properties: '{"plan":"pro","beta":true,"split":"custom-wins"}' });
    const account = impression(2, { key: 'acct-7', trafficTypeName: 'account', label: undefined });
    const settlement = await deliver({ apiKey, identities: { user: 'user_id', account: 'device_id' } }, [user, account]);

    scope.done();
    assert.equal(settlement.delivered, 2);
    assert.equal(settlement.requests, 1);
    const [body] = bodies;
    assert.ok(body);
    assert.equal(body.api_key, apiKey);
    assert.deepEqual(body.options, { min_id_length: 1 });
    assert.deepEqual(body.events[0], {
      user_id: 'user-42',
      event_type: 'get_treatment',
      time: user.time,
      insert_id: 'imp-0001',
      event_properties: {
        split: 'custom-wins', // a custom impression property wins over the built-in one
        treatment: 'on',
        key: 'user-42',
        time: user.time,
        environmentId: 'env-prod',
        impressionId: 'imp-0001',
        receptionTimestamp: 1_718_900_001_000,
        label: 'default rule',
        environmentName: 'Prod-Default',
        splitVersionNumber: 1_718_800_000_000,
        trafficTypeName: 'user',
        plan: 'pro',
        beta: 'true',
      },
    });
    assert.equal(body.events[1]?.device_id, 'acct-7');
    assert.equal(body.events[1]?.user_id, undefined);
    assert.equal(body.events[1]?.insert_id, 'imp-0002');
    assert.equal(body.events[1]?.event_properties.label, undefined);
  });

  test('uses the configured event name', async () => {
    const bodies: SentBody[] = [];
    const scope = nock(standard).post('/2/httpapi', capture(bodies)).reply(200, { code: 200 });
    await deliver({ apiKey, eventName: 'Feature Flag Evaluated' }, impressions(1));
    scope.done();
    assert.equal(bodies[0]?.events[0]?.event_type, 'Feature Flag Evaluated');
  });

  test('region eu posts to the EU residency host', async () => {
    const scope = nock('https://api.eu.amplitude.com').post('/2/httpapi').reply(200, { code: 200 });
    const settlement = await deliver({ apiKey, region: 'eu' }, impressions(2));
    scope.done();
    assert.equal(settlement.delivered, 2);
    assert.equal(amplitudeConnector.regions?.eu, 'https://api.eu.amplitude.com');
  });

  test('baseUrl overrides the region', async () => {
    const scope = nock('https://amplitude-proxy.example.com').post('/ingest/2/httpapi').reply(200, { code: 200 });
    const settlement = await deliver({ apiKey, region: 'eu', baseUrl: 'https://amplitude-proxy.example.com/ingest/' }, impressions(1));
    scope.done();
    assert.equal(settlement.delivered, 1);
  });

  test('api batch posts the same body to /batch and allows 20 MB requests', async () => {
    const bodies: SentBody[] = [];
    const scope = nock(standard).post('/batch', capture(bodies)).reply(200, { code: 200 });
    const settlement = await deliver({ apiKey, api: 'batch' }, impressions(3));
    scope.done();
    assert.equal(settlement.delivered, 3);
    assert.equal(bodies[0]?.events.length, 3);
    const limits = amplitudeConnector.limits(amplitudeConnector.settingsSchema.parse({ apiKey, api: 'batch' }));
    assert.ok(limits.maxBytesPerRequest > 19_000_000 && limits.maxBytesPerRequest <= 20_000_000);
  });

  test('settings reject more than 2000 events per request and event names over 1024 characters', () => {
    assert.equal(amplitudeConnector.settingsSchema.safeParse({ apiKey, batchSize: 2001 }).success, false);
    assert.equal(amplitudeConnector.settingsSchema.safeParse({ apiKey, eventName: 'e'.repeat(1025) }).success, false);
    assert.equal(amplitudeConnector.settingsSchema.safeParse({ apiKey, region: 'us' }).success, false);
    assert.equal(amplitudeConnector.settingsSchema.safeParse(amplitudeConnector.exampleSettings).success, true);
  });

  test('a batch over the item limit is split into requests of at most batchSize events', async () => {
    const sizes: number[] = [];
    const scope = nock(standard)
      .post('/2/httpapi', (body: unknown) => sizes.push((body as SentBody).events.length) > 0)
      .times(2)
      .reply(200, { code: 200 });
    const settings = amplitudeConnector.settingsSchema.parse({ apiKey });
    assert.equal(amplitudeConnector.limits(settings).maxItemsPerRequest, 1000);

    const settlement = await deliver({ apiKey }, impressions(1001));

    scope.done();
    assert.deepEqual(sizes.sort((a, b) => b - a), [1000, 1]);
    assert.equal(settlement.delivered, 1001);
  });

  test('a batch over the 1 MB HTTP V2 byte limit is split before sending', async () => {
    const sizes: number[] = [];
    const scope = nock(standard)
      .post('/2/httpapi', (body: unknown) => sizes.push((body as SentBody).events.length) > 0)
      .times(2)
      .reply(200, { code: 200 });
    // Four events of ~300 kB: 1.2 MB together, 600 kB per half.
    const big = impressions(4, { properties: JSON.stringify({ payload: 'x'.repeat(300_000) }) });

    const settlement = await deliver({ apiKey }, big);

    scope.done();
    assert.deepEqual(sizes, [2, 2]);
    assert.equal(settlement.delivered, 4);
    assert.equal(settlement.requests, 2);
  });

  test('an unmapped traffic type is skipped and never sent', async () => {
    const bodies: SentBody[] = [];
    const scope = nock(standard).post('/2/httpapi', capture(bodies)).reply(200, { code: 200 });
    const items = [impression(1), impression(2, { trafficTypeName: 'account' }), impression(3, { trafficTypeName: undefined })];

    const settlement = await deliver({ apiKey, identities: { user: 'user_id' } }, items);

    scope.done();
    assert.equal(settlement.skipped, 2);
    assert.equal(settlement.delivered, 1);
    assert.deepEqual(
      bodies[0]?.events.map((e) => e.insert_id),
      ['imp-0001'],
    );
  });

  test('a key Amplitude documents as an invalid id is dead-lettered at encode, the rest is sent', async () => {
    const bodies: SentBody[] = [];
    const scope = nock(standard).post('/2/httpapi', capture(bodies)).reply(200, { code: 200 });

    const settlement = await deliver({ apiKey }, [impression(1), impression(2, { key: 'null' }), impression(3, { key: 'k'.repeat(1025) })]);

    scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0002', 'imp-0003']);
    assert.ok(settlement.rejected.every((r) => r.code === 'invalid_payload'));
    assert.deepEqual(
      bodies[0]?.events.map((e) => e.insert_id),
      ['imp-0001'],
    );
  });

  test('a replay of the same impressions sends the same insert_ids, so Amplitude dedupes it', async () => {
    const bodies: SentBody[] = [];
    const scope = nock(standard).post('/2/httpapi', capture(bodies)).times(2).reply(200, { code: 200 });
    const items = impressions(3);

    await deliver({ apiKey }, items);
    await deliver({ apiKey }, items.map((item) => ({ ...item })));

    scope.done();
    const first = bodies[0]?.events.map((e) => e.insert_id);
    assert.deepEqual(first, ['imp-0001', 'imp-0002', 'imp-0003']);
    assert.deepEqual(
      bodies[1]?.events.map((e) => e.insert_id),
      first,
    );
  });
});

describe('amplitude connector: responses', () => {
  test('400 with events_with_invalid_fields / events_with_missing_fields: listed events dead-lettered, the rest retried (nothing was ingested)', async () => {
    const scope = nock(standard)
      .post('/2/httpapi')
      .reply(400, {
        code: 400,
        error: 'Invalid field values on some events',
        events_with_invalid_fields: { time: [1] },
        events_with_missing_fields: { event_type: [3] },
      });
    const items = impressions(4);

    const settlement = await deliver({ apiKey }, items);

    scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0002', 'imp-0004']);
    assert.ok(settlement.rejected.every((r) => r.code === 'invalid_payload' && r.status === 400));
    assert.match(settlement.rejected.find((r) => r.item.id === 'imp-0002')?.reason ?? '', /invalid time/);
    assert.match(settlement.rejected.find((r) => r.item.id === 'imp-0004')?.reason ?? '', /missing event_type/);
    assert.deepEqual(ids(settlement.pending), ['imp-0001', 'imp-0003']);
    assert.equal(settlement.delivered, 0);
    assert.equal(settlement.throttled, false);
  });

  test('400 silenced devices: silenced events dead-lettered, throttled ones wait, the rest retried', async () => {
    const scope = nock(standard)
      .post('/2/httpapi')
      .reply(400, {
        code: 400,
        eps_threshold: 100,
        error: 'Events silenced for device_id',
        exceeded_daily_quota_devices: {},
        silenced_devices: ['user-1'],
        silenced_events: [0],
        throttled_devices: { 'user-3': 100 },
        throttled_events: [2],
      });

    const settlement = await deliver({ apiKey }, impressions(4));

    scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0001']);
    assert.match(settlement.rejected[0]?.reason ?? '', /silenced/);
    assert.deepEqual(ids(settlement.pending), ['imp-0002', 'imp-0003', 'imp-0004']);
    assert.equal(settlement.throttled, true);
    assert.equal(settlement.retryAfterMs, 30_000);
  });

  test('400 without index information dead-letters the whole request as invalid_payload', async () => {
    const scope = nock(standard).post('/2/httpapi').reply(400, { code: 400, error: 'Invalid JSON request body' });
    const settlement = await deliver({ apiKey }, impressions(2));
    scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0001', 'imp-0002']);
    assert.ok(settlement.rejected.every((r) => r.code === 'invalid_payload'));
  });

  test('400 "Invalid API key" is an auth failure of the destination', async () => {
    const scope = nock(standard).post('/2/httpapi').reply(400, { code: 400, error: `Invalid API key: ${apiKey}` });
    const settlement = await deliver({ apiKey }, impressions(2));
    scope.done();
    assert.equal(settlement.rejected.length, 2);
    assert.ok(settlement.rejected.every((r) => r.code === 'destination_auth' && r.status === 400));
    assert.ok(settlement.rejected.every((r) => !r.reason.includes(apiKey)), 'the key echoed by Amplitude stays out of dead letters');
  });

  test('429 with throttled_events: every event goes back (none ingested), throttled for 30 s', async () => {
    const scope = nock(standard)
      .post('/2/httpapi')
      .reply(429, {
        code: 429,
        error: 'Too many requests for some devices and users',
        eps_threshold: 30,
        throttled_users: { 'user-1': 32 },
        throttled_events: [0],
      });

    const settlement = await deliver({ apiKey }, impressions(3));

    scope.done();
    assert.deepEqual(ids(settlement.pending), ['imp-0001', 'imp-0002', 'imp-0003']);
    assert.equal(settlement.rejected.length, 0);
    assert.equal(settlement.throttled, true);
    assert.equal(settlement.retryAfterMs, 30_000);
  });

  test('429 with throttled_events, per item: the throttled ones throttled (Retry-After wins), the others retried', () => {
    const settings: AmplitudeSettings = amplitudeConnector.settingsSchema.parse({ apiKey });
    const [sent] = amplitudeConnector.encode(impressions(3), settings, { now, destinationId: 'amplitude-prod' }).requests;
    assert.ok(sent);
    const response: HttpResponse = {
      status: 429,
      headers: { 'retry-after': '12' },
      body: JSON.stringify({ code: 429, error: 'Too many requests for some devices and users', throttled_events: [0, 2] }),
    };

    const outcome = amplitudeConnector.classify({ ok: true, response }, sent);

    assert.equal(outcome.kind, 'partial');
    assert.ok(outcome.kind === 'partial');
    assert.equal(outcome.byItem.get('imp-0001')?.kind, 'throttled');
    assert.equal(outcome.byItem.get('imp-0003')?.kind, 'throttled');
    const first = outcome.byItem.get('imp-0001');
    assert.ok(first?.kind === 'throttled');
    assert.equal(first.retryAfterMs, 12_000);
    assert.equal(outcome.byItem.get('imp-0002')?.kind, 'retry');
  });

  test('429 without throttled_events throttles the whole request', async () => {
    const scope = nock(standard).post('/2/httpapi').reply(429, { code: 429, error: 'Too many requests for some devices and users' });
    const settlement = await deliver({ apiKey }, impressions(2));
    scope.done();
    assert.equal(settlement.pending.length, 2);
    assert.equal(settlement.throttled, true);
    assert.equal(settlement.retryAfterMs, 30_000);
  });

  test('413 splits the request in halves and re-sends them', async () => {
    const sizes: number[] = [];
    const record = (length: number) => (body: unknown) => {
      const events = (body as SentBody).events.length;
      if (events !== length) return false;
      sizes.push(events);
      return true;
    };
    const scope = nock(standard)
      .post('/2/httpapi', record(4))
      .reply(413, { code: 413, error: 'Payload too large' })
      .post('/2/httpapi', record(2))
      .times(2)
      .reply(200, { code: 200 });

    const settlement = await deliver({ apiKey }, impressions(4));

    scope.done();
    assert.deepEqual(sizes, [4, 2, 2]);
    assert.equal(settlement.delivered, 4);
    assert.equal(settlement.requests, 3);
  });

  for (const status of [500, 502, 503, 504]) {
    test(`${status} is retried (insert_id makes a re-send safe)`, async () => {
      const scope = nock(standard).post('/2/httpapi').reply(status, 'upstream trouble');
      const settlement = await deliver({ apiKey }, impressions(2));
      scope.done();
      assert.deepEqual(ids(settlement.pending), ['imp-0001', 'imp-0002']);
      assert.equal(settlement.throttled, false);
      assert.equal(settlement.lastFailure?.status, status);
    });
  }

  test('403 from the WAF is an auth failure of the destination', async () => {
    const scope = nock(standard).post('/2/httpapi').reply(403, { code: 403, error: 'Forbidden' });
    const settlement = await deliver({ apiKey }, impressions(1));
    scope.done();
    assert.equal(settlement.rejected[0]?.code, 'destination_auth');
  });
});
