import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import nock from 'nock';
import { mixpanelConnector, mixpanelInsertId } from '../../src/connectors/mixpanel/mixpanel-connector.js';
import type { BatchSettlement } from '../../src/delivery/deliver-batch.js';
import type { Impression } from '../../src/domain/impression.js';
import { captureBodies, deliverThrough, useNockedTransport, numberedImpression, numberedImpressions, rejectedIds, sortedIds } from '../helpers/connector-harness.js';

const us = 'https://api.mixpanel.com';
const serviceAccount = { projectId: '3141592', serviceAccountUsername: 'flagstream.sa', serviceAccountSecret: 'sa-secret-123' };
const basicServiceAccount = `Basic ${Buffer.from('flagstream.sa:sa-secret-123').toString('base64')}`;

interface SentEvent {
  event: string;
  properties: Record<string, string | number>;
}

const impression = numberedImpression;
const impressions = numberedImpressions;

const transport = useNockedTransport();

function deliver(raw: Record<string, unknown>, items: readonly Impression[]): Promise<BatchSettlement> {
  return deliverThrough(mixpanelConnector, raw, items, transport(), 'mixpanel-prod');
}

/** A nock body matcher that records what was sent and accepts it when `accept` holds. */
const capture = (into: SentEvent[][], accept: (events: SentEvent[]) => boolean = () => true) => captureBodies<SentEvent[]>(into, (events) => Array.isArray(events) && accept(events));
const ids = sortedIds;


describe('mixpanel connector: settings', () => {
  const parses = (raw: Record<string, unknown>): boolean => mixpanelConnector.settingsSchema.safeParse(raw).success;

  test('accepts a service account with project id, or a project token', () => {
    assert.equal(parses(serviceAccount), true);
    assert.equal(parses({ projectToken: 'tok123' }), true);
    assert.equal(parses(mixpanelConnector.exampleSettings), true);
  });

  test('refuses no credentials, both kinds, half a service account, or a service account without project id', () => {
    assert.equal(parses({}), false);
    assert.equal(parses({ ...serviceAccount, projectToken: 'tok123' }), false);
    assert.equal(parses({ projectId: '3141592', serviceAccountUsername: 'flagstream.sa' }), false);
    assert.equal(parses({ serviceAccountUsername: 'flagstream.sa', serviceAccountSecret: 'sa-secret-123' }), false);
    assert.equal(parses({ ...serviceAccount, batchSize: 2001 }), false);
    assert.equal(parses({ ...serviceAccount, region: 'ap' }), false);
  });
});

describe('mixpanel connector: requests', () => {
  test('sends the documented /import body with service-account Basic auth and project_id', async () => {
    const bodies: SentEvent[][] = [];
    const scope = nock(us)
      .matchHeader('authorization', basicServiceAccount)
      .matchHeader('content-type', 'application/json')
      .post('/import', capture(bodies))
      .query({ strict: '1', project_id: '3141592' })
      .reply(200, { code: 200, num_records_imported: 2, status: 'OK' });

    const first = impression(1, { key: 'user-42', properties: '{"plan":"pro","time":5,"distinct_id":"spoof"}' });
    const settlement = await deliver(serviceAccount, [first, impression(2)]);

    scope.done();
    assert.equal(settlement.delivered, 2);
    assert.equal(bodies.length, 1);
    assert.deepEqual(bodies[0]?.[0], {
      event: 'get_treatment',
      properties: {
        split: 'new_checkout',
        treatment: 'on',
        key: 'user-42',
        time: first.time, // ms since epoch; the reserved properties win over custom ones
        environmentId: 'env-prod',
        impressionId: 'imp-0001',
        receptionTimestamp: 1_718_900_001_000,
        label: 'default rule',
        environmentName: 'Prod-Default',
        splitVersionNumber: 1_718_800_000_000,
        trafficTypeName: 'user',
        plan: 'pro',
        distinct_id: 'user-42',
        $insert_id: 'imp-0001',
      },
    });
    assert.equal(bodies[0]?.[1]?.properties.$insert_id, 'imp-0002');
  });

  test('a project token authenticates as Basic username with an empty password, without project_id', async () => {
    const scope = nock(us)
      .matchHeader('authorization', `Basic ${Buffer.from('tok123:').toString('base64')}`)
      .post('/import')
      .query({ strict: '1' })
      .reply(200, { code: 200, num_records_imported: 1, status: 'OK' });
    const settlement = await deliver({ projectToken: 'tok123', projectId: '3141592' }, impressions(1));
    scope.done();
    assert.equal(settlement.delivered, 1);
  });

  for (const [region, host] of [
    ['eu', 'https://api-eu.mixpanel.com'],
    ['in', 'https://api-in.mixpanel.com'],
  ] as const) {
    test(`region ${region} posts to ${host}`, async () => {
      const scope = nock(host).post('/import').query(true).reply(200, { code: 200, num_records_imported: 1, status: 'OK' });
      const settlement = await deliver({ ...serviceAccount, region }, impressions(1));
      scope.done();
      assert.equal(settlement.delivered, 1);
      assert.equal(mixpanelConnector.regions?.[region], host);
    });
  }

  test('baseUrl overrides the region', async () => {
    const scope = nock('https://mixpanel-proxy.example.com').post('/mp/import').query({ strict: '1', project_id: '3141592' }).reply(200, { code: 200 });
    const settlement = await deliver({ ...serviceAccount, region: 'eu', baseUrl: 'https://mixpanel-proxy.example.com/mp' }, impressions(1));
    scope.done();
    assert.equal(settlement.delivered, 1);
  });

  test('a batch over 2000 events is split at the item limit', async () => {
    const sizes: number[] = [];
    const scope = nock(us)
      .post('/import', (body: unknown) => sizes.push((body as SentEvent[]).length) > 0)
      .query(true)
      .times(2)
      .reply(200, { code: 200, status: 'OK' });
    const settings = mixpanelConnector.settingsSchema.parse(serviceAccount);
    assert.equal(mixpanelConnector.limits(settings).maxItemsPerRequest, 2000);

    const settlement = await deliver(serviceAccount, impressions(2001));

    scope.done();
    assert.deepEqual(sizes.sort((a, b) => b - a), [2000, 1]);
    assert.equal(settlement.delivered, 2001);
  });

  test('a batch over the 2 MB byte limit is split before sending', async () => {
    const sizes: number[] = [];
    const scope = nock(us)
      .post('/import', (body: unknown) => sizes.push((body as SentEvent[]).length) > 0)
      .query(true)
      .times(2)
      .reply(200, { code: 200, status: 'OK' });
    // Four events of ~600 kB: 2.4 MB together, 1.2 MB per half.
    const big = impressions(4, { properties: JSON.stringify({ payload: 'x'.repeat(600_000) }) });

    const settlement = await deliver(serviceAccount, big);

    scope.done();
    assert.deepEqual(sizes, [2, 2]);
    assert.equal(settlement.delivered, 4);
  });

  test('an unmapped traffic type is skipped and never sent', async () => {
    const bodies: SentEvent[][] = [];
    const scope = nock(us).post('/import', capture(bodies)).query(true).reply(200, { code: 200, status: 'OK' });

    const settlement = await deliver({ ...serviceAccount, identities: { user: 'distinct_id' } }, [impression(1), impression(2, { trafficTypeName: 'account' })]);

    scope.done();
    assert.equal(settlement.skipped, 1);
    assert.equal(settlement.delivered, 1);
    assert.deepEqual(
      bodies[0]?.map((e) => e.properties.$insert_id),
      ['imp-0001'],
    );
  });

  test('a replay sends the same $insert_ids; ids Mixpanel would refuse map to a stable 36-character hash', async () => {
    const bodies: SentEvent[][] = [];
    const scope = nock(us).post('/import', capture(bodies)).query(true).times(2).reply(200, { code: 200, status: 'OK' });
    const items = [impression(1), impression(2, { id: 'Zm9v_YmFy-base64url_id_with_under' })];

    await deliver(serviceAccount, items);
    await deliver(serviceAccount, items.map((item) => ({ ...item })));

    scope.done();
    const first = bodies[0]?.map((e) => e.properties.$insert_id);
    const hashed = mixpanelInsertId('Zm9v_YmFy-base64url_id_with_under');
    assert.match(hashed, /^[0-9a-f]{36}$/);
    assert.deepEqual(first, ['imp-0001', hashed]);
    assert.deepEqual(
      bodies[1]?.map((e) => e.properties.$insert_id),
      first,
    );
    assert.equal(bodies[0]?.[1]?.properties.impressionId, 'Zm9v_YmFy-base64url_id_with_under');
  });
});

describe('mixpanel connector: responses', () => {
  test('400 with failed_records: only the failed events are dead-lettered, the rest count as imported', async () => {
    const scope = nock(us)
      .post('/import')
      .query(true)
      .reply(400, {
        code: 400,
        error: 'some data points in the request failed validation',
        status: 'Bad Request',
        num_records_imported: 2,
        failed_records: [
          { index: 1, insert_id: 'imp-0002', field: 'properties.time', message: "'properties.time' is invalid: must be specified as seconds since epoch" },
          { index: 3, $insert_id: 'imp-0004', field: 'properties.distinct_id', message: 'disallowed value' },
        ],
      });

    const settlement = await deliver(serviceAccount, impressions(4));

    scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0002', 'imp-0004']);
    assert.ok(settlement.rejected.every((r) => r.code === 'invalid_payload' && r.status === 400));
    assert.match(settlement.rejected.find((r) => r.item.id === 'imp-0002')?.reason ?? '', /properties\.time/);
    assert.equal(settlement.delivered, 2);
    assert.equal(settlement.pending.length, 0);
  });

  test('400 failed_records without index are matched by insert_id', async () => {
    const scope = nock(us)
      .post('/import')
      .query(true)
      .reply(400, { code: 400, error: 'some data points in the request failed validation', failed_records: [{ insert_id: 'imp-0001', field: 'event', message: 'bad' }] });
    const settlement = await deliver(serviceAccount, impressions(2));
    scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0001']);
    assert.equal(settlement.delivered, 1);
  });

  test('400 without failed_records dead-letters the whole request', async () => {
    const scope = nock(us).post('/import').query(true).reply(400, { code: 400, error: 'invalid JSON', status: 'Bad Request' });
    const settlement = await deliver(serviceAccount, impressions(2));
    scope.done();
    assert.deepEqual(rejectedIds(settlement), ['imp-0001', 'imp-0002']);
    assert.ok(settlement.rejected.every((r) => r.code === 'invalid_payload'));
  });

  test('401 dead-letters the request as destination_auth', async () => {
    const scope = nock(us).post('/import').query(true).reply(401, { code: 401, error: 'Invalid credentials', status: 'Unauthorized' });
    const settlement = await deliver(serviceAccount, impressions(2));
    scope.done();
    assert.equal(settlement.rejected.length, 2);
    assert.ok(settlement.rejected.every((r) => r.code === 'destination_auth' && r.status === 401));
  });

  test('413 splits the request in halves and re-sends them', async () => {
    const sizes: number[] = [];
    const record = (length: number) => (body: unknown) => {
      const events = (body as SentEvent[]).length;
      if (events !== length) return false;
      sizes.push(events);
      return true;
    };
    const scope = nock(us)
      .post('/import', record(4))
      .query(true)
      .reply(413, { code: 413, error: 'request exceeds max limit of 2097152 bytes', status: 'Request Entity Too Large' })
      .post('/import', record(2))
      .query(true)
      .times(2)
      .reply(200, { code: 200, status: 'OK' });

    const settlement = await deliver(serviceAccount, impressions(4));

    scope.done();
    assert.deepEqual(sizes, [4, 2, 2]);
    assert.equal(settlement.delivered, 4);
  });

  test('429 throttles the request (Retry-After honoured when present)', async () => {
    const body = { code: 429, error: 'Project exceeded rate limits. Please retry the request with exponential backoff.', status: 'Too Many Requests' };
    const scope = nock(us).post('/import').query(true).reply(429, body).post('/import').query(true).reply(429, body, { 'Retry-After': '7' });

    const plain = await deliver(serviceAccount, impressions(2));
    const withHeader = await deliver(serviceAccount, impressions(2));

    scope.done();
    assert.deepEqual(ids(plain.pending), ['imp-0001', 'imp-0002']);
    assert.equal(plain.throttled, true);
    assert.equal(plain.retryAfterMs, undefined);
    assert.equal(withHeader.retryAfterMs, 7000);
  });

  for (const status of [500, 502, 503]) {
    test(`${status} is retried ($insert_id makes a re-send safe)`, async () => {
      const scope = nock(us).post('/import').query(true).reply(status, 'upstream trouble');
      const settlement = await deliver(serviceAccount, impressions(2));
      scope.done();
      assert.deepEqual(ids(settlement.pending), ['imp-0001', 'imp-0002']);
      assert.equal(settlement.throttled, false);
    });
  }
});
