import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import nock from 'nock';
import {
  type MparticleBatch,
  mparticleConnector,
  mparticleMaxBatchBytes,
  mparticleMaxRequestBytes,
  mpidLiteral,
} from '../../src/connectors/mparticle/mparticle-connector.js';
import type { BatchSettlement } from '../../src/delivery/deliver-batch.js';
import type { Impression } from '../../src/domain/impression.js';
import { captureBodies, deliverThrough, numberedImpression, numberedImpressions, rejectedIds, sortedIds, useNockedTransport } from '../helpers/connector-harness.js';

const apiKey = 'us1-0123456789abcdef0123456789abcdef';
const apiSecret = 'Zx8pQ2mW7vB4nK1tR6yH3cL9sD5fG0jA';
const basicAuth = `Basic ${Buffer.from(`${apiKey}:${apiSecret}`).toString('base64')}`;
const us1 = 'https://s2s.mparticle.com';
const credentials = { apiKey, apiSecret };

const impression = numberedImpression;
const impressions = numberedImpressions;
const capture = captureBodies<MparticleBatch[]>;
const ids = sortedIds;

const transport = useNockedTransport();

function deliver(raw: Record<string, unknown>, items: readonly Impression[]): Promise<BatchSettlement> {
  return deliverThrough(mparticleConnector, { ...credentials, ...raw }, items, transport(), 'mparticle-prod');
}

/** Replies to every bulk POST on `origin` in turn, recording raw bodies and headers. */
function bulkApi(origin: string, replies: readonly { status: number; body?: unknown; headers?: Record<string, string> }[]) {
  const raw: string[] = [];
  const headers: Record<string, string | string[] | undefined>[] = [];
  let scope = nock(origin);
  for (const reply of replies) {
    scope = scope.post('/v2/bulkevents').reply(function (_uri, body) {
      raw.push(typeof body === 'string' ? body : JSON.stringify(body));
      headers.push({ ...this.req.headers });
      return [reply.status, reply.body ?? '', reply.headers ?? {}];
    });
  }
  return { scope, raw, headers, bodies: () => raw.map((text) => JSON.parse(text) as MparticleBatch[]) };
}

describe('mparticle connector: requests', () => {
  test('posts the documented bulk body: one custom_event batch per impression, Basic key:secret, source_request_id = impression id', async () => {
    const api = bulkApi(us1, [{ status: 202 }]);
    const user = impression(1, { key: 'user-42', bucketingKey: 'acct-7', properties: '{"plan":"pro","beta":true,"split":"custom-wins"}', sdk: 'nodejs', sdkVersion: '11.11.2' });
    const account = impression(2, { key: 'acct-7', trafficTypeName: 'account', label: undefined });

    const settlement = await deliver({ identities: { user: 'customer_id', account: 'other' } }, [user, account]);

    api.scope.done();
    assert.equal(settlement.delivered, 2);
    assert.equal(settlement.requests, 1);
    assert.equal(api.headers[0]?.authorization, basicAuth);
    assert.equal(api.headers[0]?.['content-type'], 'application/json');
    assert.deepEqual(api.bodies()[0], [
      {
        source_request_id: 'imp-0001',
        environment: 'production',
        user_identities: { customer_id: 'user-42' },
        events: [
          {
            event_type: 'custom_event',
            data: {
              event_name: 'get_treatment',
              custom_event_type: 'other',
              source_message_id: 'imp-0001',
              timestamp_unixtime_ms: user.time,
              custom_attributes: {
                split: 'custom-wins', // a custom impression property wins, as in Split's integrations
                treatment: 'on',
                key: 'user-42',
                time: String(user.time),
                environmentId: 'env-prod',
                impressionId: 'imp-0001',
                receptionTimestamp: '1718900001000',
                label: 'default rule',
                environmentName: 'Prod-Default',
                splitVersionNumber: '1718800000000',
                bucketingKey: 'acct-7',
                trafficTypeName: 'user',
                sdk: 'nodejs',
                sdkVersion: '11.11.2',
                plan: 'pro',
                beta: 'true',
              },
            },
          },
        ],
      },
      {
        source_request_id: 'imp-0002',
        environment: 'production',
        user_identities: { other: 'acct-7' },
        events: [
          {
            event_type: 'custom_event',
            data: {
              event_name: 'get_treatment',
              custom_event_type: 'other',
              source_message_id: 'imp-0002',
              timestamp_unixtime_ms: account.time,
              custom_attributes: {
                split: 'new_checkout',
                treatment: 'on',
                key: 'acct-7',
                time: String(account.time),
                environmentId: 'env-prod',
                impressionId: 'imp-0002',
                receptionTimestamp: '1718900001000',
                environmentName: 'Prod-Default',
                splitVersionNumber: '1718800000000',
                trafficTypeName: 'account',
              },
            },
          },
        ],
      },
    ]);
    assert.equal(api.raw[0]?.includes(apiSecret), false, 'the secret travels only in the Authorization header');
  });

  test('environment, event name and custom_event_type come from the settings', async () => {
    const bodies: MparticleBatch[][] = [];
    const scope = nock(us1).post('/v2/bulkevents', capture(bodies)).reply(202);
    await deliver({ environment: 'development', eventName: 'Feature Flag Evaluated', customEventType: 'user_preference' }, impressions(1));
    scope.done();
    const [batch] = bodies[0] ?? [];
    assert.equal(batch?.environment, 'development');
    assert.equal(batch?.events[0].data.event_name, 'Feature Flag Evaluated');
    assert.equal(batch?.events[0].data.custom_event_type, 'user_preference');
  });

  for (const [pod, host] of [
    ['us2', 'https://s2s.us2.mparticle.com'],
    ['eu1', 'https://s2s.eu1.mparticle.com'],
    ['au1', 'https://s2s.au1.mparticle.com'],
  ] as const) {
    test(`pod ${pod} posts to ${host}/v2/bulkevents`, async () => {
      const scope = nock(host).matchHeader('authorization', basicAuth).post('/v2/bulkevents').reply(202);
      const settlement = await deliver({ pod }, impressions(1));
      scope.done();
      assert.equal(settlement.delivered, 1);
    });
  }

  test('baseUrl wins over the pod', async () => {
    const scope = nock('https://mp-proxy.example.com').post('/ingest/v2/bulkevents').reply(202);
    const settlement = await deliver({ pod: 'eu1', baseUrl: 'https://mp-proxy.example.com/ingest/' }, impressions(1));
    scope.done();
    assert.equal(settlement.delivered, 1);
  });

  test('mpid identity is written as a raw int64 number, exact beyond 2^53; a key that is not one is dead-lettered', async () => {
    const api = bulkApi(us1, [{ status: 202 }]);
    const items = [impression(1, { key: '7346244611012968789' }), impression(2, { key: 'user-2' }), impression(3, { key: '9223372036854775808' }), impression(4, { key: '-42' })];

    const settlement = await deliver({ identities: { '*': 'mpid' } }, items);

    api.scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0002', 'imp-0003']);
    assert.ok(settlement.rejected.every((r) => r.code === 'invalid_payload' && /mpid/.test(r.reason)));
    assert.equal(settlement.delivered, 2);
    assert.equal(typeof (api.bodies()[0]?.[0] as unknown as { mpid: unknown }).mpid, 'number', 'mpid arrives as a JSON number');
    // nock parses the body into JS numbers, which round above 2^53: the exact digits are checked on the bytes sent.
    const settings = mparticleConnector.settingsSchema.parse({ ...credentials, identities: { '*': 'mpid' } });
    const raw = String(mparticleConnector.encode(items, settings, { now: 0, destinationId: 'mparticle-prod' }).requests[0]?.request.body);
    assert.ok(raw.startsWith('[{"mpid":7346244611012968789,"source_request_id":"imp-0001"'), raw.slice(0, 80));
    assert.ok(raw.includes('{"mpid":-42,"source_request_id":"imp-0004"'));
    assert.equal(raw.includes('user_identities'), false, 'mpid batches carry no user_identities');
    assert.equal(mpidLiteral('007'), '7');
    assert.equal(mpidLiteral('-9223372036854775808'), '-9223372036854775808');
    assert.equal(mpidLiteral('1e3'), undefined);
  });

  test('a batch over the 100-batch limit is split into requests of at most batchSize batches', async () => {
    const sizes: number[] = [];
    const scope = nock(us1)
      .post('/v2/bulkevents', (body: unknown) => sizes.push((body as unknown[]).length) > 0)
      .times(3)
      .reply(202);
    assert.equal(mparticleConnector.limits(mparticleConnector.settingsSchema.parse(credentials)).maxItemsPerRequest, 100);

    const settlement = await deliver({}, impressions(250));

    scope.done();
    assert.deepEqual(sizes.sort((a, b) => b - a), [100, 100, 50]);
    assert.equal(settlement.delivered, 250);
  });

  test('requests are packed under 256 KB, and a batch over 128 KB is dead-lettered before sending', async () => {
    const sizes: number[] = [];
    const counts: number[] = [];
    const scope = nock(us1)
      .post('/v2/bulkevents', (body: unknown) => counts.push((body as unknown[]).length) > 0)
      .times(3)
      .reply(function () {
        sizes.push(Number(this.req.headers['content-length']));
        return [202, ''];
      });
    // ~60 kB per batch: four fit under 255 000 bytes, and one of ~130 kB is too big on its own.
    const padded = impressions(10, { properties: JSON.stringify({ note: 'x'.repeat(60_000) }) });
    const huge = impression(11, { properties: JSON.stringify({ note: 'x'.repeat(130_000) }) });

    const settlement = await deliver({}, [...padded, huge]);

    scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0011']);
    assert.equal(settlement.rejected[0]?.code, 'payload_too_large');
    assert.match(settlement.rejected[0]?.reason ?? '', /128 KB per batch/);
    assert.equal(settlement.delivered, 10);
    assert.deepEqual(counts, [4, 4, 2]);
    for (const size of sizes) assert.ok(size <= mparticleMaxRequestBytes, `request of ${size} bytes`);
    assert.ok(mparticleMaxBatchBytes < mparticleMaxRequestBytes);
  });

  test('an unmapped traffic type is skipped and never sent', async () => {
    const bodies: MparticleBatch[][] = [];
    const scope = nock(us1).post('/v2/bulkevents', capture(bodies)).reply(202);
    const items = [impression(1), impression(2, { trafficTypeName: 'account' }), impression(3, { trafficTypeName: undefined })];

    const settlement = await deliver({ identities: { user: 'email' } }, items);

    scope.done();
    assert.equal(settlement.skipped, 2);
    assert.deepEqual(
      bodies[0]?.map((batch) => [batch.source_request_id, batch.user_identities]),
      [['imp-0001', { email: 'user-1' }]],
    );
  });

  test('a retry after a 503 and a replay send the same source_request_ids, so mParticle deduplicates them', async () => {
    const api = bulkApi(us1, [{ status: 503 }, { status: 202 }, { status: 202 }]);
    const items = impressions(3);

    const first = await deliver({}, items);
    assert.deepEqual(ids(first.pending), ['imp-0001', 'imp-0002', 'imp-0003']);
    await deliver({}, first.pending);
    await deliver({}, items.map((item) => ({ ...item })));

    api.scope.done();
    const keys = api.bodies().map((body) => body.map((batch) => [batch.source_request_id, batch.events[0].data.source_message_id]));
    assert.deepEqual(keys[0], [
      ['imp-0001', 'imp-0001'],
      ['imp-0002', 'imp-0002'],
      ['imp-0003', 'imp-0003'],
    ]);
    assert.deepEqual(keys[1], keys[0]);
    assert.deepEqual(keys[2], keys[0]);
    assert.equal(api.raw[1], api.raw[0], 'a retry sends the same bytes');
  });

  test('limits: 100 batches and 255 000 bytes per request, pacing from the documented 270 batches/s', () => {
    const limits = mparticleConnector.limits(mparticleConnector.settingsSchema.parse(credentials));
    assert.equal(limits.maxBytesPerRequest, 255_000);
    assert.equal(limits.requestsPerSecond, 2.7);
    const raised = mparticleConnector.limits(mparticleConnector.settingsSchema.parse({ ...credentials, batchSize: 50, batchesPerSecond: 1000 }));
    assert.equal(raised.requestsPerSecond, 20);
  });

  test('settings: strict, key and secret required, limits of the Events API enforced', () => {
    const parse = (raw: Record<string, unknown>) => mparticleConnector.settingsSchema.safeParse(raw).success;
    assert.equal(parse(credentials), true);
    assert.equal(parse({ apiKey }), false);
    assert.equal(parse({ ...credentials, batchSize: 101 }), false);
    assert.equal(parse({ ...credentials, eventName: 'e'.repeat(257) }), false);
    assert.equal(parse({ ...credentials, pod: 'us3' }), false);
    assert.equal(parse({ ...credentials, environment: 'staging' }), false);
    assert.equal(parse({ ...credentials, identities: { user: 'device_id' } }), false);
    assert.equal(parse({ ...credentials, evntName: 'typo' }), false, 'an unknown setting is an error, not silently ignored');
    assert.deepEqual(mparticleConnector.secretSettings, ['apiKey', 'apiSecret']);
  });
});

describe('mparticle connector: responses', () => {
  test('400 with the documented errors body dead-letters the request as invalid_payload, naming mParticle’s code and message', async () => {
    const api = bulkApi(us1, [{ status: 400, body: { errors: [{ code: 'BAD_REQUEST', message: 'Required event field "event_type" is missing or empty.' }] } }]);
    const settlement = await deliver({}, impressions(2));
    api.scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0001', 'imp-0002']);
    assert.ok(settlement.rejected.every((r) => r.code === 'invalid_payload' && r.status === 400));
    assert.match(settlement.rejected[0]?.reason ?? '', /BAD_REQUEST: Required event field "event_type" is missing or empty/);
  });

  test('400 without a body (the body is optional) still dead-letters the request', async () => {
    const api = bulkApi(us1, [{ status: 400 }]);
    const settlement = await deliver({}, impressions(1));
    api.scope.done();
    assert.equal(settlement.rejected[0]?.code, 'invalid_payload');
    assert.equal(settlement.rejected[0]?.reason, 'HTTP 400');
  });

  for (const status of [401, 403]) {
    test(`${status} (authentication missing or invalid) is an auth failure of the destination`, async () => {
      const api = bulkApi(us1, [{ status }]);
      const settlement = await deliver({}, impressions(2));
      api.scope.done();
      assert.ok(settlement.rejected.length === 2 && settlement.rejected.every((r) => r.code === 'destination_auth' && r.status === status));
    });
  }

  test('429 waits Retry-After and names the limit from X-mp-rate-limit-exceeded', async () => {
    const api = bulkApi(us1, [{ status: 429, headers: { 'retry-after': '12', 'x-mp-rate-limit-exceeded': 'workspace' } }]);
    const settlement = await deliver({}, impressions(2));
    api.scope.done();
    assert.deepEqual(ids(settlement.pending), ['imp-0001', 'imp-0002']);
    assert.equal(settlement.throttled, true);
    assert.equal(settlement.retryAfterMs, 12_000);
    assert.match(settlement.lastFailure?.reason ?? '', /rate limit exceeded: workspace/);
  });

  test('429 without Retry-After (an acceleration limit) is throttled on the destination’s schedule', () => {
    const settings = mparticleConnector.settingsSchema.parse(credentials);
    const [sent] = mparticleConnector.encode(impressions(1), settings, { now: 0, destinationId: 'mparticle-prod' }).requests;
    assert.ok(sent);
    const outcome = mparticleConnector.classify({ ok: true, response: { status: 429, headers: { 'x-mp-rate-limit-exceeded': '"acceleration"' }, body: '' } }, sent);
    assert.equal(outcome.kind, 'throttled');
    assert.ok(outcome.kind === 'throttled');
    assert.equal(outcome.retryAfterMs, undefined);
    assert.match(outcome.reason, /acceleration/);
  });

  for (const status of [500, 502, 503]) {
    test(`${status} is retried (source_request_id makes a re-send safe)`, async () => {
      const api = bulkApi(us1, [{ status }]);
      const settlement = await deliver({}, impressions(2));
      api.scope.done();
      assert.deepEqual(ids(settlement.pending), ['imp-0001', 'imp-0002']);
      assert.equal(settlement.throttled, false);
      assert.equal(settlement.lastFailure?.status, status);
    });
  }

  test('413 splits the request in halves and re-sends them', async () => {
    const sizes: number[] = [];
    const record = (length: number) => (body: unknown) => {
      if ((body as unknown[]).length !== length) return false;
      sizes.push(length);
      return true;
    };
    const scope = nock(us1).post('/v2/bulkevents', record(4)).reply(413).post('/v2/bulkevents', record(2)).times(2).reply(202);
    const settlement = await deliver({}, impressions(4));
    scope.done();
    assert.deepEqual(sizes, [4, 2, 2]);
    assert.equal(settlement.delivered, 4);
  });

  test('202 counts the whole bulk request as delivered (mParticle reports no per-batch result)', async () => {
    const api = bulkApi(us1, [{ status: 202 }]);
    const settlement = await deliver({}, impressions(3));
    api.scope.done();
    assert.equal(settlement.delivered, 3);
    assert.equal(settlement.rejected.length + settlement.pending.length, 0);
  });
});
