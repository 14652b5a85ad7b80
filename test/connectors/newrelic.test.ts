import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import nock from 'nock';
import { flattenedProperties, maxTimestampAgeMs, newRelicConnector, newRelicMaxBodyBytes, type NewRelicEvent } from '../../src/connectors/newrelic/newrelic-connector.js';
import type { BatchSettlement } from '../../src/delivery/deliver-batch.js';
import type { Impression } from '../../src/domain/impression.js';
import { deliverThrough, numberedImpression, numberedImpressions, rejectedIds, sortedIds, testNow, useNockedTransport } from '../helpers/connector-harness.js';

const accountId = '1234567';
const apiKey = 'eu01xx0123456789abcdef0123456789abcdNRAL';
const us = 'https://insights-collector.newrelic.com';
const path = `/v1/accounts/${accountId}/events`;

const impression = numberedImpression;
const impressions = numberedImpressions;
const transport = useNockedTransport();

function deliver(raw: Record<string, unknown>, items: readonly Impression[]): Promise<BatchSettlement> {
  return deliverThrough(newRelicConnector, { accountId, apiKey, ...raw }, items, transport(), 'newrelic-prod');
}

interface Sent {
  readonly events: NewRelicEvent[];
  readonly gzipBytes: number;
}

/** A nock body matcher: nock hands a binary body over as hex; this gunzips it (so it must be gzip) and records it. */
function gzipped(into: Sent[], accept: (events: NewRelicEvent[]) => boolean = () => true): (body: string) => boolean {
  return (body) => {
    const raw = Buffer.from(body, 'hex');
    const events = JSON.parse(gunzipSync(raw).toString('utf8')) as NewRelicEvent[];
    if (!accept(events)) return false;
    into.push({ events, gzipBytes: raw.length });
    return true;
  };
}

const ids = (sent: Sent | undefined) => sent?.events.map((e) => e.impressionId) ?? [];

describe('newrelic connector: requests', () => {
  test('posts a gzipped JSON array of flat SplitImpression events with the license key in Api-Key', async () => {
    const sent: Sent[] = [];
    const scope = nock(us)
      .matchHeader('api-key', apiKey)
      .matchHeader('content-type', 'application/json')
      .matchHeader('content-encoding', 'gzip')
      .post(path, gzipped(sent))
      .reply(200, { success: true, uuid: 'c1a7e5d2-0000-4000-8000-000000000001' });
    const user = impression(1, { time: testNow - 5000, properties: JSON.stringify({ plan: 'pro', beta: true, cart: { items: [{ sku: 'A-1', qty: 2 }], coupon: null }, tags: ['x', 'y'] }) });
    const account = impression(2, { time: testNow - 4000, trafficTypeName: 'account', label: undefined });

    const settlement = await deliver({}, [user, account]);

    scope.done();
    assert.equal(settlement.delivered, 2);
    assert.deepEqual(sent[0]?.events, [
      {
        split: 'new_checkout',
        treatment: 'on',
        key: 'user-1',
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
        'cart.items.0.sku': 'A-1',
        'cart.items.0.qty': 2,
        'tags.0': 'x',
        'tags.1': 'y',
        eventType: 'SplitImpression',
        timestamp: user.time,
      },
      {
        split: 'new_checkout',
        treatment: 'on',
        key: 'user-2',
        time: account.time,
        environmentId: 'env-prod',
        impressionId: 'imp-0002',
        receptionTimestamp: 1_718_900_001_000,
        environmentName: 'Prod-Default',
        splitVersionNumber: 1_718_800_000_000,
        trafficTypeName: 'account',
        eventType: 'SplitImpression',
        timestamp: account.time,
      },
    ]);
  });

  test('an Insights insert key goes in X-Insert-Key; region eu and a custom event type', async () => {
    const sent: Sent[] = [];
    const scope = nock('https://insights-collector.eu01.nr-data.net')
      .matchHeader('x-insert-key', 'NRII-insert-key')
      .matchHeader('api-key', (value: string | undefined) => value === undefined)
      .post(path, gzipped(sent))
      .reply(200, { success: true, uuid: 'u' });

    await deliver({ apiKey: 'NRII-insert-key', keyType: 'insert', region: 'eu', eventType: 'Split:Impression_v2' }, impressions(1));

    scope.done();
    assert.equal(sent[0]?.events[0]?.eventType, 'Split:Impression_v2');
  });

  test('baseUrl wins over the region', async () => {
    const scope = nock('https://nr-proxy.example.com').post(`/nr${path}`).reply(200, { success: true });
    assert.equal((await deliver({ region: 'eu', baseUrl: 'https://nr-proxy.example.com/nr/' }, impressions(1))).delivered, 1);
    scope.done();
  });

  test('custom properties never replace eventType or timestamp', async () => {
    const sent: Sent[] = [];
    const scope = nock(us).post(path, gzipped(sent)).reply(200, { success: true });
    await deliver({}, [impression(1, { time: testNow - 1000, properties: JSON.stringify({ eventType: 'Hijack', timestamp: 'yesterday' }) })]);
    scope.done();
    assert.equal(sent[0]?.events[0]?.eventType, 'SplitImpression');
    assert.equal(sent[0]?.events[0]?.timestamp, testNow - 1000);
  });

  test('an impression older than the 24 hours New Relic takes as timestamp is stamped on arrival; `time` keeps the real time', async () => {
    const sent: Sent[] = [];
    const scope = nock(us).post(path, gzipped(sent)).reply(200, { success: true });
    const old = impression(1, { time: testNow - maxTimestampAgeMs - 1 });
    await deliver({}, [old]);
    scope.done();
    assert.equal('timestamp' in (sent[0]?.events[0] ?? {}), false);
    assert.equal(sent[0]?.events[0]?.time, old.time);
  });

  test('a batch over 1000 events is split into requests of at most batchSize events', async () => {
    const sizes: number[] = [];
    const scope = nock(us)
      .post(path, gzipped([], (events) => sizes.push(events.length) > 0))
      .times(2)
      .reply(200, { success: true });
    assert.equal(newRelicConnector.settingsSchema.safeParse({ accountId, apiKey, batchSize: 1001 }).success, false);

    const settlement = await deliver({}, impressions(1001));

    scope.done();
    assert.deepEqual(sizes.sort((a, b) => b - a), [1000, 1]);
    assert.equal(settlement.delivered, 1001);
  });

  test('1 MB per POST is held on the uncompressed JSON, so the gzipped body is always under it too', async () => {
    const sent: Sent[] = [];
    const scope = nock(us)
      .post(path, gzipped(sent))
      .times(2)
      .reply(200, { success: true });
    // 12 events of ~100 kB (25 attributes of 4000 characters): 1.2 MB uncompressed, a few kB gzipped.
    const properties = JSON.stringify(Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`p${i}`, 'x'.repeat(4000)])));

    const settlement = await deliver({}, impressions(12, { properties }));

    scope.done();
    assert.deepEqual(sent.map((s) => s.events.length), [6, 6]);
    for (const request of sent) {
      assert.ok(Buffer.byteLength(JSON.stringify(request.events)) <= newRelicMaxBodyBytes);
      assert.ok(request.gzipBytes < newRelicMaxBodyBytes);
    }
    assert.equal(settlement.delivered, 12);
  });

  test('an unmapped traffic type is skipped and never sent', async () => {
    const sent: Sent[] = [];
    const scope = nock(us).post(path, gzipped(sent)).reply(200, { success: true });
    const settlement = await deliver({ identities: { user: 'key' } }, [impression(1), impression(2, { trafficTypeName: 'account' })]);
    scope.done();
    assert.equal(settlement.skipped, 1);
    assert.deepEqual(ids(sent[0]), ['imp-0001']);
  });
});

describe('newrelic connector: validated before sending (New Relic answers 200 and drops bad events later)', () => {
  test('values over 4096 characters are truncated; over 255 attributes, or a name over 255 characters, is dead-lettered as invalid_payload', async () => {
    const sent: Sent[] = [];
    const scope = nock(us).post(path, gzipped(sent)).reply(200, { success: true });
    const many = JSON.stringify(Object.fromEntries(Array.from({ length: 250 }, (_, i) => [`a${i}`, i])));
    const items = [
      impression(1, { properties: JSON.stringify({ note: 'n'.repeat(5000) }) }),
      impression(2, { properties: many }),
      impression(3, { properties: JSON.stringify({ ['n'.repeat(256)]: 1 }) }),
      impression(4, { properties: JSON.stringify({ nested: { ['m'.repeat(250)]: 1 } }) }),
    ];

    const settlement = await deliver({}, items);

    scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0002', 'imp-0003', 'imp-0004']);
    assert.ok(settlement.rejected.every((r) => r.code === 'invalid_payload'));
    assert.match(settlement.rejected.find((r) => r.item.id === 'imp-0002')?.reason ?? '', /over the 255 New Relic accepts/);
    assert.match(settlement.rejected.find((r) => r.item.id === 'imp-0004')?.reason ?? '', /longer than the 255 characters/);
    assert.deepEqual(ids(sent[0]), ['imp-0001']);
    assert.equal(sent[0]?.events[0]?.note, 'n'.repeat(4096));
  });

  test('flattening: dotted names for objects and arrays, booleans as strings, nulls left out, a non-object kept whole', () => {
    assert.deepEqual(flattenedProperties(JSON.stringify({ a: { b: { c: 1 } }, l: [true, null, { k: 'v' }], n: null })), { 'a.b.c': 1, 'l.0': 'true', 'l.2.k': 'v' });
    assert.deepEqual(flattenedProperties('[1,2]'), { properties: '[1,2]' });
    assert.deepEqual(flattenedProperties('not json'), { properties: 'not json' });
    assert.deepEqual(flattenedProperties(undefined), {});
  });

  test('settings: numeric account id, New Relic’s event type characters, no unknown keys', () => {
    const ok = (raw: Record<string, unknown>) => newRelicConnector.settingsSchema.safeParse({ accountId, apiKey, ...raw }).success;
    assert.equal(ok({}), true);
    assert.equal(ok({ accountId: 'acct' }), false);
    assert.equal(ok({ eventType: 'Split.Impression' }), false);
    assert.equal(ok({ eventType: 'Split Impression' }), false);
    assert.equal(ok({ keyType: 'user' }), false);
    assert.equal(ok({ licenseKey: apiKey }), false);
  });
});

describe('newrelic connector: answers', () => {
  test('200 {"success":true,"uuid"} is delivered (accepted for asynchronous processing)', async () => {
    const scope = nock(us).post(path).reply(200, { success: true, uuid: '5b3e9f6a-1111-4222-8333-944455556666' });
    assert.equal((await deliver({}, impressions(2))).delivered, 2);
    scope.done();
  });

  const cases: [number, string, string][] = [
    [400, 'Missing or invalid content length: Unable to process empty request.', 'invalid_payload'],
    [403, 'Missing or invalid key', 'destination_auth'],
    [415, 'Invalid content type', 'invalid_payload'],
  ];
  for (const [status, body, code] of cases) {
    test(`${status} rejects the request as ${code}`, async () => {
      const scope = nock(us).post(path).reply(status, body);
      const settlement = await deliver({}, impressions(2));
      scope.done();
      assert.deepEqual(settlement.rejected.map((r) => [r.item.id, r.code, r.status]), [['imp-0001', code, status], ['imp-0002', code, status]]);
    });
  }

  for (const status of [408, 500, 503]) {
    test(`${status} is retried`, async () => {
      const scope = nock(us).post(path).reply(status, 'try again');
      const settlement = await deliver({}, impressions(2));
      scope.done();
      assert.deepEqual(sortedIds(settlement.pending), ['imp-0001', 'imp-0002']);
      assert.equal(settlement.throttled, false);
    });
  }

  test('413 splits the request; 429 throttles for Retry-After, else for the rest of New Relic’s one-minute window', async () => {
    const split = nock(us)
      .post(path, gzipped([], (events) => events.length === 2))
      .reply(413, 'Content too large')
      .post(path, gzipped([], (events) => events.length === 1))
      .times(2)
      .reply(200, { success: true });
    assert.equal((await deliver({}, impressions(2))).delivered, 2);
    split.done();

    const throttled = nock(us).post(path).reply(429, 'Too many requests').post(path).reply(429, '', { 'Retry-After': '9' });
    const first = await deliver({}, impressions(1));
    const second = await deliver({}, impressions(1));
    throttled.done();
    assert.equal(first.throttled, true);
    assert.equal(first.retryAfterMs, 60_000);
    assert.equal(second.retryAfterMs, 9000);
  });

  test('no dedup key exists: a retry and a replay send the same events, impressionId included, so queries can tell repeats apart', async () => {
    const sent: Sent[] = [];
    const scope = nock(us).post(path, gzipped(sent)).reply(503).post(path, gzipped(sent)).times(2).reply(200, { success: true });
    const items = impressions(3, { time: testNow - 1000 });

    const first = await deliver({}, items);
    await deliver({}, first.pending);
    await deliver({}, items.map((item) => ({ ...item })));

    scope.done();
    assert.deepEqual(ids(sent[0]), ['imp-0001', 'imp-0002', 'imp-0003']);
    assert.deepEqual(sent[1]?.events, sent[0]?.events);
    assert.deepEqual(sent[2]?.events, sent[0]?.events);
  });
});
