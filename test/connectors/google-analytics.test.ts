import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import nock from 'nock';
import {
  googleAnalyticsConnector,
  googleAnalyticsMaxBodyBytes,
  type GoogleAnalyticsBody,
  type GoogleAnalyticsSettings,
} from '../../src/connectors/google-analytics/google-analytics-connector.js';
import { ConnectorRegistry, builtInConnectors } from '../../src/connectors/registry.js';
import type { BatchSettlement } from '../../src/delivery/deliver-batch.js';
import { testDestination } from '../../src/delivery/test-destination.js';
import { DestinationSchema, EnvironmentSchema } from '../../src/domain/configuration.js';
import type { Impression } from '../../src/domain/impression.js';
import { buildConfigSnapshot } from '../../src/runtime/config-snapshot.js';
import { captureBodies, deliverThrough, numberedImpression, numberedImpressions, rejectedIds, sortedIds, testNow, useNockedTransport } from '../helpers/connector-harness.js';

const measurementId = 'G-3K7Q2Z9WXY';
const apiSecret = 'b7Vx2pQeTqCkA9mR4sLh1w';
const global = 'https://www.google-analytics.com';
const query = { measurement_id: measurementId, api_secret: apiSecret };
const hour = 3_600_000;

const impression = numberedImpression;
const impressions = numberedImpressions;
const transport = useNockedTransport();

function deliver(raw: Record<string, unknown>, items: readonly Impression[]): Promise<BatchSettlement> {
  return deliverThrough(googleAnalyticsConnector, { measurementId, apiSecret, ...raw }, items, transport(), 'ga-prod');
}

const capture = captureBodies<GoogleAnalyticsBody>;
const parse = (raw: Record<string, unknown>): GoogleAnalyticsSettings => googleAnalyticsConnector.settingsSchema.parse({ measurementId, apiSecret, ...raw });

describe('google-analytics connector: requests', () => {
  test('posts the documented Measurement Protocol body: one request per device, the split_* parameters, the impression time in microseconds', async () => {
    const bodies: GoogleAnalyticsBody[] = [];
    const scope = nock(global)
      .matchHeader('content-type', 'application/json')
      .post('/mp/collect', capture(bodies))
      .query(query)
      .times(2)
      .reply(204);
    const user = impression(1, { key: 'user-42', time: testNow - 1000 + 1, properties: '{"plan":"pro"}' });
    const account = impression(2, { key: 'acct-7', time: testNow - 1000 + 2, trafficTypeName: 'account', label: undefined, splitVersionNumber: undefined });

    const settlement = await deliver({ identities: { user: 'user_id', account: 'client_id' } }, [user, account]);

    scope.done();
    assert.equal(settlement.delivered, 2);
    assert.equal(settlement.requests, 2);
    const byDevice = new Map(bodies.map((body) => [body.client_id, body]));
    assert.deepEqual(byDevice.get('user-42'), {
      client_id: 'user-42',
      user_id: 'user-42',
      events: [
        {
          name: 'split_impression',
          timestamp_micros: user.time * 1000,
          params: { split_name: 'new_checkout', split_treatment: 'on', split_label: 'default rule', split_change_number: 1_718_800_000_000, split_impression_id: 'imp-0001' },
        },
      ],
    });
    // client_id only: no user_id, and no label or change number when the impression has none.
    assert.deepEqual(byDevice.get('acct-7'), {
      client_id: 'acct-7',
      events: [{ name: 'split_impression', timestamp_micros: account.time * 1000, params: { split_name: 'new_checkout', split_treatment: 'on', split_impression_id: 'imp-0002' } }],
    });
  });

  test('an app stream sends firebase_app_id in the query and app_instance_id in the body', async () => {
    const bodies: GoogleAnalyticsBody[] = [];
    const scope = nock(global).post('/mp/collect', capture(bodies)).query({ firebase_app_id: '1:1234567890:android:321abc456def7890', api_secret: apiSecret }).reply(204);

    await deliverThrough(googleAnalyticsConnector, { firebaseAppId: '1:1234567890:android:321abc456def7890', apiSecret, eventName: 'flag_seen' }, [impression(1)], transport());

    scope.done();
    assert.equal(bodies[0]?.app_instance_id, 'user-1');
    assert.equal(bodies[0]?.client_id, undefined);
    assert.equal(bodies[0]?.events[0]?.name, 'flag_seen');
  });

  test('region eu posts to region1.google-analytics.com; baseUrl wins over the region', async () => {
    const eu = nock('https://region1.google-analytics.com').post('/mp/collect').query(query).reply(204);
    assert.equal((await deliver({ region: 'eu' }, impressions(1))).delivered, 1);
    eu.done();

    const proxy = nock('https://ga-proxy.example.com').post('/prefix/mp/collect').query(query).reply(204);
    assert.equal((await deliver({ region: 'eu', baseUrl: 'https://ga-proxy.example.com/prefix/' }, impressions(1))).delivered, 1);
    proxy.done();
  });

  test('one device’s impressions are sent in requests of at most 25 events, in time order', async () => {
    const sizes: number[] = [];
    const sent: string[] = [];
    const scope = nock(global)
      .post('/mp/collect', (body: GoogleAnalyticsBody) => {
        sizes.push(body.events.length);
        sent.push(...body.events.map((e) => String(e.params.split_impression_id)));
        return true;
      })
      .query(query)
      .times(3)
      .reply(204);
    const items = impressions(60, { key: 'same-user' });
    assert.equal(googleAnalyticsConnector.limits(parse({})).maxItemsPerRequest, 25);

    const settlement = await deliver({}, items);

    scope.done();
    assert.deepEqual(sizes.sort((a, b) => b - a), [25, 25, 10]);
    assert.deepEqual(sent.sort(), sortedIds(items));
    assert.equal(settlement.delivered, 60);
  });

  test('a request over the 130 kB body limit is split; an impression that cannot fit alone is dead-lettered', async () => {
    // A client_id so long that 25 events of it are over 130 kB, but 12 or 13 fit.
    const settings = parse({});
    const sizeWith = (key: string, count: number) => googleAnalyticsConnector.encode(impressions(count, { key }), settings, { now: testNow, destinationId: 'ga' }).requests[0]?.bytes ?? 0;
    const perEvent = sizeWith('k', 2) - sizeWith('k', 1);
    const longKey = 'k'.repeat(googleAnalyticsMaxBodyBytes - sizeWith('k', 13) - 1);
    assert.ok(sizeWith(longKey, 25) > googleAnalyticsMaxBodyBytes && sizeWith(longKey, 13) <= googleAnalyticsMaxBodyBytes, `per event ${perEvent} bytes`);
    const sizes: number[] = [];
    const scope = nock(global)
      .post('/mp/collect', (body: GoogleAnalyticsBody) => sizes.push(body.events.length) > 0)
      .query(query)
      .times(2)
      .reply(204);
    const huge = impression(99, { key: 'h'.repeat(googleAnalyticsMaxBodyBytes) });

    const settlement = await deliver({}, [...impressions(25, { key: longKey }), huge]);

    scope.done();
    assert.deepEqual(sizes.sort((a, b) => b - a), [13, 12]);
    assert.equal(settlement.delivered, 25);
    assert.deepEqual(rejectedIds(settlement), ['imp-0099']);
    assert.equal(settlement.rejected[0]?.code, 'payload_too_large');
  });

  test('an unmapped traffic type is skipped and never sent', async () => {
    const bodies: GoogleAnalyticsBody[] = [];
    const scope = nock(global).post('/mp/collect', capture(bodies)).query(query).reply(204);

    const settlement = await deliver({ identities: { user: 'client_id' } }, [impression(1), impression(2, { trafficTypeName: 'account' })]);

    scope.done();
    assert.equal(settlement.skipped, 1);
    assert.equal(settlement.delivered, 1);
    assert.equal(bodies.length, 1);
    assert.equal(bodies[0]?.client_id, 'user-1');
  });
});

describe('google-analytics connector: validated before sending (GA answers 2xx to bad events)', () => {
  test('parameter values are truncated to GA’s 100 characters, whole characters only', async () => {
    const bodies: GoogleAnalyticsBody[] = [];
    const scope = nock(global).post('/mp/collect', capture(bodies)).query(query).reply(204);
    const longFlag = `${'f'.repeat(99)}😀tail`;

    await deliver({}, [impression(1, { split: longFlag, treatment: 't'.repeat(150), label: 'l'.repeat(101) })]);

    scope.done();
    const params = bodies[0]?.events[0]?.params ?? {};
    assert.equal(params.split_name, `${'f'.repeat(99)}😀`);
    assert.equal(params.split_treatment, 't'.repeat(100));
    assert.equal(params.split_label, 'l'.repeat(100));
  });

  test('impressions older than GA’s 72-hour window, or with a key that has no UTF-8 form, are dead-lettered as invalid_payload; the rest is sent', async () => {
    const bodies: GoogleAnalyticsBody[] = [];
    const scope = nock(global).post('/mp/collect', capture(bodies)).query(query).reply(204);
    const items = [impression(1), impression(2, { time: testNow - 73 * hour }), impression(3, { key: 'bad-\uD800-key' }), impression(4, { key: 'user-1', time: testNow - 71 * hour })];

    const settlement = await deliver({}, items);

    scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0002', 'imp-0003']);
    assert.ok(settlement.rejected.every((r) => r.code === 'invalid_payload'));
    assert.match(settlement.rejected.find((r) => r.item.id === 'imp-0002')?.reason ?? '', /older than the 72 hours GA accepts/);
    assert.match(settlement.rejected.find((r) => r.item.id === 'imp-0003')?.reason ?? '', /not valid UTF-8/);
    assert.deepEqual(bodies.flatMap((b) => b.events.map((e) => e.params.split_impression_id)).sort(), ['imp-0001', 'imp-0004']);
  });

  test('an impression time ahead of flagstream’s clock is sent as now (GA takes past times only)', async () => {
    const bodies: GoogleAnalyticsBody[] = [];
    const scope = nock(global).post('/mp/collect', capture(bodies)).query(query).reply(204);
    await deliver({}, [impression(1, { time: testNow + 60_000 })]);
    scope.done();
    assert.equal(bodies[0]?.events[0]?.timestamp_micros, testNow * 1000);
  });

  test('settings: GA’s event naming rules, reserved names and prefixes, one stream, no unknown keys', () => {
    const ok = (raw: Record<string, unknown>) => googleAnalyticsConnector.settingsSchema.safeParse({ measurementId, apiSecret, ...raw }).success;
    assert.equal(ok({}), true);
    assert.equal(parse({}).eventName, 'split_impression');
    assert.equal(ok({ eventName: 'a'.repeat(40) }), true);
    assert.equal(ok({ eventName: 'a'.repeat(41) }), false);
    assert.equal(ok({ eventName: '1st_event' }), false);
    assert.equal(ok({ eventName: 'split impression' }), false);
    assert.equal(ok({ eventName: 'session_start' }), false);
    assert.equal(ok({ eventName: 'google_split' }), false);
    assert.equal(ok({ eventName: 'firebase_x' }), false);
    assert.equal(ok({ firebaseAppId: '1:1:web:1' }), false, 'both streams');
    assert.equal(googleAnalyticsConnector.settingsSchema.safeParse({ apiSecret }).success, false, 'no stream');
    assert.equal(ok({ measurmentId: 'typo' }), false, 'unknown keys are refused');
    assert.equal(ok({ region: 'us' }), false);
  });
});

describe('google-analytics connector: answers', () => {
  test('GA answers 2xx to everything it receives: 200 and 204 are delivered', async () => {
    const scope = nock(global).post('/mp/collect').query(query).reply(200, '').post('/mp/collect').query(query).reply(204);
    assert.equal((await deliver({}, [impression(1)])).delivered, 1);
    assert.equal((await deliver({}, [impression(2)])).delivered, 1);
    scope.done();
  });

  for (const status of [500, 502, 503, 504]) {
    test(`${status} is retried`, async () => {
      const scope = nock(global).post('/mp/collect').query(query).reply(status, 'backend error');
      const settlement = await deliver({}, impressions(2, { key: 'u' }));
      scope.done();
      assert.deepEqual(sortedIds(settlement.pending), ['imp-0001', 'imp-0002']);
      assert.equal(settlement.lastFailure?.status, status);
    });
  }

  test('429 throttles for Retry-After; 413 splits; 401/403 are destination_auth; another 4xx rejects the request', async () => {
    const throttled = nock(global).post('/mp/collect').query(query).reply(429, 'rate limited', { 'Retry-After': '20' });
    const first = await deliver({}, impressions(2, { key: 'u' }));
    throttled.done();
    assert.equal(first.throttled, true);
    assert.equal(first.retryAfterMs, 20_000);

    const split = nock(global)
      .post('/mp/collect', (body: GoogleAnalyticsBody) => body.events.length === 2)
      .query(query)
      .reply(413, 'too large')
      .post('/mp/collect', (body: GoogleAnalyticsBody) => body.events.length === 1)
      .query(query)
      .times(2)
      .reply(204);
    assert.equal((await deliver({}, impressions(2, { key: 'u' }))).delivered, 2);
    split.done();

    const auth = nock(global).post('/mp/collect').query(query).reply(403, 'forbidden');
    assert.equal((await deliver({}, [impression(1)])).rejected[0]?.code, 'destination_auth');
    auth.done();

    const bad = nock(global).post('/mp/collect').query(query).reply(400, 'bad request');
    assert.equal((await deliver({}, [impression(1)])).rejected[0]?.code, 'invalid_payload');
    bad.done();
  });

  test('GA has no dedup key: a retry and a replay send the same body, split_impression_id included', async () => {
    const bodies: GoogleAnalyticsBody[] = [];
    const scope = nock(global).post('/mp/collect', capture(bodies)).query(query).reply(503).post('/mp/collect', capture(bodies)).query(query).times(2).reply(204);
    const items = impressions(3, { key: 'u' });

    const first = await deliver({}, items);
    const retried = await deliver({}, first.pending);
    const replayed = await deliver({}, items.map((item) => ({ ...item })));

    scope.done();
    assert.equal(retried.delivered, 3);
    assert.equal(replayed.delivered, 3);
    assert.deepEqual(bodies[0]?.events.map((e) => e.params.split_impression_id), ['imp-0001', 'imp-0002', 'imp-0003']);
    assert.deepEqual(bodies[1], bodies[0]);
    assert.deepEqual(bodies[2], bodies[0]);
  });
});

describe('google-analytics connector: destinations test uses the validation server', () => {
  const destinationFor = (settings: Record<string, unknown>) => {
    const environment = EnvironmentSchema.parse({ id: 'env-prod', destinations: [DestinationSchema.parse({ id: 'ga-prod', type: 'google-analytics', settings })] });
    const destination = buildConfigSnapshot([environment], new ConnectorRegistry(builtInConnectors), 1).destinations.get('ga-prod');
    assert.ok(destination?.settings !== undefined, destination?.settingsError);
    return destination;
  };

  test('the test impression goes to /debug/mp/collect (nothing stored); no validation message is delivered', async () => {
    const bodies: GoogleAnalyticsBody[] = [];
    const scope = nock(global).post('/debug/mp/collect', capture(bodies)).query(query).reply(200, { validationMessages: [] });

    const report = await testDestination(destinationFor({ measurementId, apiSecret }), { http: transport() }, testNow);

    scope.done();
    assert.equal(report.outcome, 'delivered');
    assert.equal(report.validationOnly, true);
    assert.equal(bodies[0]?.client_id, 'flagstream-test');
    assert.equal((bodies[0] as GoogleAnalyticsBody & { validation_behavior?: string }).validation_behavior, 'ENFORCE_RECOMMENDATIONS');
    assert.equal(bodies[0]?.events[0]?.params.split_name, 'flagstream_test_event');
  });

  test('validation messages make the test fail and are quoted in its reason', async () => {
    const scope = nock(global)
      .post('/debug/mp/collect')
      .query(query)
      .reply(200, { validationMessages: [{ fieldPath: 'events[0].params.split_name', description: 'Value is too long.', validationCode: 'VALUE_INVALID' }] });

    const report = await testDestination(destinationFor({ measurementId, apiSecret }), { http: transport() }, testNow);

    scope.done();
    assert.equal(report.outcome, 'rejected');
    assert.equal(report.reason, 'GA validation: events[0].params.split_name: Value is too long. (VALUE_INVALID)');
    assert.match(JSON.stringify(report.response), /validationMessages/);
  });
});
