import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import nock from 'nock';
import { heapConnector, heapMaxBodyBytes, type HeapTrackEvent, type HeapUserProperties } from '../../src/connectors/heap/heap-connector.js';
import type { BatchSettlement } from '../../src/delivery/deliver-batch.js';
import type { Impression } from '../../src/domain/impression.js';
import { captureBodies, deliverThrough, numberedImpression, numberedImpressions, rejectedIds, sortedIds, useNockedTransport } from '../helpers/connector-harness.js';

const appId = '1234567890';
const us = 'https://heapanalytics.com';

interface TrackBody {
  app_id: string;
  events: HeapTrackEvent[];
}
interface UsersBody {
  app_id: string;
  users: HeapUserProperties[];
}

const impression = numberedImpression;
const impressions = numberedImpressions;
const transport = useNockedTransport();

function deliver(raw: Record<string, unknown>, items: readonly Impression[]): Promise<BatchSettlement> {
  return deliverThrough(heapConnector, { appId, ...raw }, items, transport(), 'heap-prod');
}

const keys = (body: TrackBody | undefined) => body?.events.map((e) => e.idempotency_key) ?? [];

describe('heap connector: requests', () => {
  test('posts the documented bulk track body: app_id, events with identity, ISO timestamp, idempotency_key and impression properties', async () => {
    const bodies: TrackBody[] = [];
    const scope = nock(us).matchHeader('content-type', 'application/json').post('/api/track', captureBodies(bodies)).reply(200, '');
    const user = impression(1, { key: 'alice@example.com', properties: '{"plan":"pro","seats":3}' });
    const account = impression(2, { key: '8675309', trafficTypeName: 'account', label: undefined });

    const settlement = await deliver({ identities: { user: 'identity', account: 'user_id' } }, [user, account]);

    scope.done();
    assert.equal(settlement.delivered, 2);
    assert.equal(settlement.requests, 1);
    assert.deepEqual(bodies[0], {
      app_id: appId,
      events: [
        {
          identity: 'alice@example.com',
          event: 'get_treatment',
          timestamp: new Date(user.time).toISOString(),
          idempotency_key: 'imp-0001',
          properties: {
            split: 'new_checkout',
            treatment: 'on',
            key: 'alice@example.com',
            time: user.time,
            environmentId: 'env-prod',
            impressionId: 'imp-0001',
            receptionTimestamp: 1_718_900_001_000,
            label: 'default rule',
            environmentName: 'Prod-Default',
            splitVersionNumber: 1_718_800_000_000,
            trafficTypeName: 'user',
            plan: 'pro',
            seats: 3,
          },
        },
        {
          user_id: '8675309',
          event: 'get_treatment',
          timestamp: new Date(account.time).toISOString(),
          idempotency_key: 'imp-0002',
          properties: {
            split: 'new_checkout',
            treatment: 'on',
            key: '8675309',
            time: account.time,
            environmentId: 'env-prod',
            impressionId: 'imp-0002',
            receptionTimestamp: 1_718_900_001_000,
            environmentName: 'Prod-Default',
            splitVersionNumber: 1_718_800_000_000,
            trafficTypeName: 'account',
          },
        },
      ],
    });
  });

  test('region eu posts to c.eu.heap-api.com with the configured event name; baseUrl wins over the region', async () => {
    const bodies: TrackBody[] = [];
    const eu = nock('https://c.eu.heap-api.com').post('/api/track', captureBodies(bodies)).reply(200);
    assert.equal((await deliver({ region: 'eu', eventName: 'Split Impression' }, impressions(1))).delivered, 1);
    eu.done();
    assert.equal(bodies[0]?.events[0]?.event, 'Split Impression');

    const proxy = nock('https://heap-proxy.example.com').post('/in/api/track').reply(200);
    assert.equal((await deliver({ region: 'eu', baseUrl: 'https://heap-proxy.example.com/in/' }, impressions(1))).delivered, 1);
    proxy.done();
  });

  test('a batch over 1000 events is split into requests of at most batchSize events', async () => {
    const sizes: number[] = [];
    const scope = nock(us)
      .post('/api/track', (body: TrackBody) => sizes.push(body.events.length) > 0)
      .times(2)
      .reply(200);
    assert.equal(heapConnector.limits(heapConnector.settingsSchema.parse({ appId })).maxItemsPerRequest, 1000);
    assert.equal(heapConnector.settingsSchema.safeParse({ appId, batchSize: 1001 }).success, false);

    const settlement = await deliver({}, impressions(1001));

    scope.done();
    assert.deepEqual(sizes.sort((a, b) => b - a), [1000, 1]);
    assert.equal(settlement.delivered, 1001);
  });

  test('a batch over the byte bound is split before sending', async () => {
    const sizes: number[] = [];
    const lengths: number[] = [];
    const scope = nock(us)
      .post('/api/track', function (body: TrackBody) {
        sizes.push(body.events.length);
        lengths.push(JSON.stringify(body).length);
        return true;
      })
      .times(2)
      .reply(200);
    // 30 events of ~40 kB each (40 properties of 1000 characters): 1.2 MB together.
    const properties = JSON.stringify(Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`p${i}`, 'x'.repeat(1000)])));

    const settlement = await deliver({}, impressions(30, { properties }));

    scope.done();
    assert.deepEqual(sizes, [15, 15]);
    assert.ok(lengths.every((length) => length <= heapMaxBodyBytes));
    assert.equal(settlement.delivered, 30);
  });

  test('an unmapped traffic type is skipped and never sent', async () => {
    const bodies: TrackBody[] = [];
    const scope = nock(us).post('/api/track', captureBodies(bodies)).reply(200);
    const settlement = await deliver({ identities: { user: 'identity' } }, [impression(1), impression(2, { trafficTypeName: 'account' })]);
    scope.done();
    assert.equal(settlement.skipped, 1);
    assert.deepEqual(keys(bodies[0]), ['imp-0001']);
  });
});

describe('heap connector: validated before sending (a 400 would sink the whole request)', () => {
  test('an identity over 255 characters, a user_id that is not a number up to 2^53-1, and a property name of 1024 characters are dead-lettered; the rest is sent', async () => {
    const bodies: TrackBody[] = [];
    const scope = nock(us).post('/api/track', captureBodies(bodies)).reply(200);
    const items = [
      impression(1),
      impression(2, { key: 'k'.repeat(256) }),
      impression(3, { key: 'not-a-number', trafficTypeName: 'account' }),
      impression(4, { key: '9007199254740992', trafficTypeName: 'account' }),
      impression(5, { key: '9007199254740991', trafficTypeName: 'account' }),
      impression(6, { properties: JSON.stringify({ ['n'.repeat(1024)]: 1 }) }),
    ];

    const settlement = await deliver({ identities: { user: 'identity', account: 'user_id' } }, items);

    scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0002', 'imp-0003', 'imp-0004', 'imp-0006']);
    assert.ok(settlement.rejected.every((r) => r.code === 'invalid_payload'));
    assert.match(settlement.rejected.find((r) => r.item.id === 'imp-0002')?.reason ?? '', /255 characters/);
    assert.match(settlement.rejected.find((r) => r.item.id === 'imp-0004')?.reason ?? '', /user_id/);
    assert.deepEqual(keys(bodies[0]), ['imp-0001', 'imp-0005']);
  });

  test('property values are truncated to fewer than 1024 characters', async () => {
    const bodies: TrackBody[] = [];
    const scope = nock(us).post('/api/track', captureBodies(bodies)).reply(200);
    await deliver({}, [impression(1, { treatment: 't'.repeat(2000), properties: JSON.stringify({ note: `${'n'.repeat(1022)}😀` }) })]);
    scope.done();
    const properties = bodies[0]?.events[0]?.properties ?? {};
    assert.equal(properties.treatment, 't'.repeat(1023));
    assert.equal(properties.note, 'n'.repeat(1022), 'a surrogate pair is never cut in half');
  });

  test('settings: numeric app_id, event name up to 1024 characters, no unknown keys', () => {
    const ok = (raw: Record<string, unknown>) => heapConnector.settingsSchema.safeParse({ appId, ...raw }).success;
    assert.equal(ok({}), true);
    assert.equal(heapConnector.settingsSchema.safeParse({ appId: 'abc' }).success, false);
    assert.equal(ok({ eventName: 'e'.repeat(1025) }), false);
    assert.equal(ok({ app_id: appId }), false);
    assert.equal(ok({ identities: { user: 'email' } }), false);
  });
});

describe('heap connector: user properties (Split.<flag> = <treatment>)', () => {
  test('userProperties also sets Split.<flag> per identity through bulk add_user_properties, the latest treatment per flag winning', async () => {
    const tracks: TrackBody[] = [];
    const users: UsersBody[] = [];
    const scope = nock(us).post('/api/track', captureBodies(tracks)).reply(200).post('/api/add_user_properties', captureBodies(users)).reply(200);
    const items = [
      impression(1, { key: 'alice' }),
      impression(2, { key: 'alice', split: 'dark_mode', treatment: 'off' }),
      impression(3, { key: 'alice', split: 'dark_mode', treatment: 'on', time: impression(2).time + 1000 }),
      impression(4, { key: 'bob', treatment: 'off' }),
      impression(5, { key: '42', trafficTypeName: 'account' }),
    ];

    const settlement = await deliver({ userProperties: true, identities: { user: 'identity', account: 'user_id' } }, items);

    scope.done();
    assert.equal(settlement.delivered, 5, 'each impression counted once, though it travelled in two requests');
    assert.equal(settlement.requests, 2);
    assert.deepEqual(keys(tracks[0]), ['imp-0001', 'imp-0002', 'imp-0003', 'imp-0004', 'imp-0005']);
    assert.deepEqual(users[0], {
      app_id: appId,
      users: [
        { identity: 'alice', properties: { 'Split.new_checkout': 'on', 'Split.dark_mode': 'on' } },
        { identity: 'bob', properties: { 'Split.new_checkout': 'off' } },
      ],
    });
  });

  test('an impression is delivered only when both of its requests are: a failed user-properties call sends it again', async () => {
    const tracks: TrackBody[] = [];
    const users: UsersBody[] = [];
    const scope = nock(us)
      .post('/api/track', captureBodies(tracks))
      .times(2)
      .reply(200)
      .post('/api/add_user_properties', captureBodies(users))
      .reply(503, 'unavailable')
      .post('/api/add_user_properties', captureBodies(users))
      .reply(200);
    const items = impressions(2);

    const first = await deliver({ userProperties: true }, items);
    assert.equal(first.delivered, 0);
    assert.deepEqual(sortedIds(first.pending), ['imp-0001', 'imp-0002']);

    const second = await deliver({ userProperties: true }, first.pending);
    scope.done();
    assert.equal(second.delivered, 2);
    // The event is sent again with the same idempotency_key, so Heap keeps one.
    assert.deepEqual(tracks[1], tracks[0]);
    assert.deepEqual(users[1], users[0]);
  });

  test('a user-properties call Heap refuses dead-letters its impressions once, not twice', async () => {
    const scope = nock(us).post('/api/track').reply(200).post('/api/add_user_properties').reply(400, 'Bad request');
    const settlement = await deliver({ userProperties: true }, impressions(2));
    scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0001', 'imp-0002']);
    assert.equal(settlement.delivered, 0);
    assert.equal(settlement.pending.length, 0);
  });
});

describe('heap connector: answers', () => {
  test('400 rejects the whole request as invalid_payload with Heap’s answer', async () => {
    const scope = nock(us).post('/api/track').reply(400, 'Bad request');
    const settlement = await deliver({}, impressions(2));
    scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0001', 'imp-0002']);
    assert.ok(settlement.rejected.every((r) => r.code === 'invalid_payload' && r.status === 400 && r.reason === 'HTTP 400: Bad request'));
  });

  test('429 throttles for Retry-After, or for one minute (Heap’s rate window) without it', async () => {
    const withHeader = nock(us).post('/api/track').reply(429, 'Too Many Requests', { 'Retry-After': '5' });
    const first = await deliver({}, impressions(2));
    withHeader.done();
    assert.equal(first.throttled, true);
    assert.equal(first.retryAfterMs, 5000);
    assert.equal(first.pending.length, 2);

    const without = nock(us).post('/api/track').reply(429, 'Too Many Requests');
    const second = await deliver({}, impressions(2));
    without.done();
    assert.equal(second.throttled, true);
    assert.equal(second.retryAfterMs, 60_000);
  });

  test('5xx is retried; 413 splits; 401/403 are destination_auth; 404 destination_not_found', async () => {
    const retry = nock(us).post('/api/track').reply(502, 'bad gateway');
    assert.equal((await deliver({}, impressions(2))).pending.length, 2);
    retry.done();

    const split = nock(us)
      .post('/api/track', (body: TrackBody) => body.events.length === 2)
      .reply(413, 'Request Entity Too Large')
      .post('/api/track', (body: TrackBody) => body.events.length === 1)
      .times(2)
      .reply(200);
    assert.equal((await deliver({}, impressions(2))).delivered, 2);
    split.done();

    const auth = nock(us).post('/api/track').reply(401, 'unauthorized');
    assert.equal((await deliver({}, impressions(1))).rejected[0]?.code, 'destination_auth');
    auth.done();

    const missing = nock(us).post('/api/track').reply(404, 'not found');
    assert.equal((await deliver({}, impressions(1))).rejected[0]?.code, 'destination_not_found');
    missing.done();
  });

  test('a retry and a replay send the same idempotency_keys, so Heap dedupes them', async () => {
    const bodies: TrackBody[] = [];
    const scope = nock(us).post('/api/track', captureBodies(bodies)).reply(500).post('/api/track', captureBodies(bodies)).times(2).reply(200);
    const items = impressions(3);

    const first = await deliver({}, items);
    await deliver({}, first.pending);
    await deliver({}, items.map((item) => ({ ...item })));

    scope.done();
    assert.deepEqual(keys(bodies[0]), ['imp-0001', 'imp-0002', 'imp-0003']);
    assert.deepEqual(bodies[1], bodies[0]);
    assert.deepEqual(bodies[2], bodies[0]);
  });
});
