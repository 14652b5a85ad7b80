import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import nock from 'nock';
import { type FullstoryEvent, fullstoryConnector, fullstoryIdempotencyKey } from '../../src/connectors/fullstory/fullstory-connector.js';
import type { BatchSettlement } from '../../src/delivery/deliver-batch.js';
import type { Impression } from '../../src/domain/impression.js';
import { deliverThrough, numberedImpression, numberedImpressions, rejectedIds, sortedIds, useNockedTransport } from '../helpers/connector-harness.js';

const apiKey = 'na1.Zx8pQ2mW7vB4nK1tR6yH3cL9sD5fG0jA/o-1ABCD-na1';
const na1 = 'https://api.fullstory.com';

const impression = numberedImpression;
const impressions = numberedImpressions;
const ids = sortedIds;

const transport = useNockedTransport();

function deliver(raw: Record<string, unknown>, items: readonly Impression[]): Promise<BatchSettlement> {
  return deliverThrough(fullstoryConnector, { apiKey, ...raw }, items, transport(), 'fullstory-prod');
}

interface Received {
  readonly body: FullstoryEvent;
  readonly headers: Record<string, string | string[] | undefined>;
}

/** Replies to each Create Event POST on `origin` in turn, recording bodies and headers. */
function eventsApi(origin: string, replies: readonly { status: number; body?: unknown; headers?: Record<string, string> }[]) {
  const received: Received[] = [];
  let scope = nock(origin);
  for (const reply of replies) {
    scope = scope.post('/v2/events').reply(function (_uri, body) {
      received.push({ body: body as FullstoryEvent, headers: { ...this.req.headers } });
      return [reply.status, reply.body ?? {}, reply.headers ?? {}];
    });
  }
  return { scope, received };
}

describe('fullstory connector: requests', () => {
  test('creates one server event per impression: Basic <key> as is, user uid, most recent session, idempotency key', async () => {
    const api = eventsApi(na1, [{ status: 200 }]);
    const user = impression(1, { key: 'user-42', properties: '{"plan":"pro","beta":true}' });

    const settlement = await deliver({}, [user]);

    api.scope.done();
    assert.equal(settlement.delivered, 1);
    const [received] = api.received;
    assert.ok(received);
    assert.equal(received.headers.authorization, `Basic ${apiKey}`, 'the key is sent as is, not base64 of user:password');
    assert.equal(received.headers['content-type'], 'application/json');
    const expected: FullstoryEvent = {
      name: 'split_evaluation',
      timestamp: new Date(user.time).toISOString(),
      user: { uid: 'user-42' },
      session: { use_most_recent: true },
      properties: {
        split: 'new_checkout',
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
    };
    assert.deepEqual(received.body, expected);
    assert.equal(received.headers['idempotency-key'], fullstoryIdempotencyKey('imp-0001', JSON.stringify(expected)));
    assert.match(String(received.headers['idempotency-key']), /^imp-0001-[0-9a-f]{16}$/);
  });

  test('a batch becomes one request per impression (Create Event takes one event)', async () => {
    const api = eventsApi(na1, [{ status: 200 }, { status: 200 }, { status: 200 }]);
    const settlement = await deliver({}, impressions(3));
    api.scope.done();
    assert.equal(settlement.requests, 3);
    assert.equal(settlement.delivered, 3);
    assert.deepEqual(api.received.map((r) => r.body.user.uid).sort(), ['user-1', 'user-2', 'user-3']);
    assert.equal(fullstoryConnector.limits(fullstoryConnector.settingsSchema.parse({ apiKey })).maxItemsPerRequest, 1);
  });

  test('useMostRecentSession false sends no session (the event belongs to the user only); eventName is used', async () => {
    const api = eventsApi(na1, [{ status: 200 }]);
    await deliver({ useMostRecentSession: false, eventName: 'Feature Flag Evaluated' }, impressions(1));
    api.scope.done();
    assert.equal('session' in (api.received[0]?.body ?? {}), false);
    assert.equal(api.received[0]?.body.name, 'Feature Flag Evaluated');
  });

  test('region eu1 posts to api.eu1.fullstory.com; baseUrl wins over the region', async () => {
    const eu = eventsApi('https://api.eu1.fullstory.com', [{ status: 200 }]);
    const proxy = nock('https://fs-proxy.example.com').post('/fs/v2/events').reply(200, {});
    assert.equal((await deliver({ region: 'eu1' }, impressions(1))).delivered, 1);
    assert.equal((await deliver({ region: 'eu1', baseUrl: 'https://fs-proxy.example.com/fs/' }, impressions(1))).delivered, 1);
    eu.scope.done();
    proxy.done();
  });

  test('an unmapped traffic type is skipped and never sent; a key over 256 characters is dead-lettered', async () => {
    const api = eventsApi(na1, [{ status: 200 }]);
    const items = [impression(1), impression(2, { trafficTypeName: 'account' }), impression(3, { key: 'k'.repeat(257) })];

    const settlement = await deliver({ identities: { user: 'uid' } }, items);

    api.scope.done();
    assert.equal(settlement.skipped, 1);
    assert.deepEqual(rejectedIds(settlement), ['imp-0003']);
    assert.equal(settlement.rejected[0]?.code, 'invalid_payload');
    assert.deepEqual(
      api.received.map((r) => r.body.properties.impressionId),
      ['imp-0001'],
    );
  });

  test('an event over the 512 KB payload limit is dead-lettered as payload_too_large without a request', async () => {
    const settlement = await deliver({}, [impression(1, { properties: JSON.stringify({ note: 'x'.repeat(520_000) }) })]);
    assert.equal(settlement.requests, 0);
    assert.equal(settlement.rejected[0]?.code, 'payload_too_large');
  });

  test('a retry after a 500 and a replay send the same body and Idempotency-Key, so Fullstory creates the event once', async () => {
    const api = eventsApi(na1, [{ status: 500, body: { code: 'server_error', message: 'Server error was encountered' } }, { status: 200 }, { status: 200 }]);
    const items = impressions(1);

    const first = await deliver({}, items);
    assert.deepEqual(ids(first.pending), ['imp-0001']);
    await deliver({}, first.pending);
    await deliver({}, items.map((item) => ({ ...item })));

    api.scope.done();
    const keys = api.received.map((r) => r.headers['idempotency-key']);
    assert.equal(keys.length, 3);
    assert.ok(keys.every((key) => key === keys[0]));
    assert.deepEqual(api.received[1]?.body, api.received[0]?.body);
    assert.deepEqual(api.received[2]?.body, api.received[0]?.body);
  });

  test('a setting that changes the body changes the key (Fullstory refuses a reused key with another body)', () => {
    const encodeWith = (raw: Record<string, unknown>) =>
      fullstoryConnector.encode(impressions(1), fullstoryConnector.settingsSchema.parse({ apiKey, ...raw }), { now: 0, destinationId: 'fullstory-prod' }).requests[0]?.request.headers['idempotency-key'];
    const base = encodeWith({});
    assert.equal(encodeWith({ region: 'eu1' }), base, 'the host is not part of the body');
    assert.notEqual(encodeWith({ eventName: 'other_name' }), base);
    assert.notEqual(encodeWith({ useMostRecentSession: false }), base);
    assert.ok(base?.startsWith('imp-0001-'));
  });

  test('settings: strict, API key required, event name at most 250 characters', () => {
    const parse = (raw: Record<string, unknown>) => fullstoryConnector.settingsSchema.safeParse(raw).success;
    assert.equal(parse({ apiKey }), true);
    assert.equal(parse({}), false);
    assert.equal(parse({ apiKey, eventName: 'e'.repeat(251) }), false);
    assert.equal(parse({ apiKey, region: 'us' }), false);
    assert.equal(parse({ apiKey, identities: { user: 'email' } }), false);
    assert.equal(parse({ apiKey, sessionId: 'x' }), false, 'an unknown setting is an error');
    assert.deepEqual(fullstoryConnector.secretSettings, ['apiKey']);
  });
});

describe('fullstory connector: responses', () => {
  test('400 with {code, message} dead-letters the event as invalid_payload, naming Fullstory’s code', async () => {
    const api = eventsApi(na1, [{ status: 400, body: { code: 'required_field', message: 'uid is required' } }]);
    const settlement = await deliver({}, impressions(1));
    api.scope.done();
    assert.equal(settlement.rejected[0]?.code, 'invalid_payload');
    assert.equal(settlement.rejected[0]?.status, 400);
    assert.equal(settlement.rejected[0]?.reason, 'HTTP 400: Fullstory refused the event (required_field: uid is required)');
  });

  test('400 is per event: the other events of the batch are delivered', async () => {
    const scope = nock(na1)
      .post('/v2/events', (body: FullstoryEvent) => body.user.uid === 'user-2')
      .reply(400, { code: 'invalid_argument', message: 'bad property' })
      .post('/v2/events', (body: FullstoryEvent) => body.user.uid !== 'user-2')
      .times(2)
      .reply(200, {});
    const settlement = await deliver({}, impressions(3));
    scope.done();
    assert.equal(settlement.delivered, 2);
    assert.deepEqual(rejectedIds(settlement), ['imp-0002']);
  });

  for (const [status, code] of [
    [401, 'destination_auth'],
    [403, 'destination_auth'],
    [404, 'destination_not_found'],
  ] as const) {
    test(`${status} is rejected as ${code}`, async () => {
      const api = eventsApi(na1, [{ status, body: { code: 'unauthorized', message: 'access is unauthorized' } }]);
      const settlement = await deliver({}, impressions(1));
      api.scope.done();
      assert.equal(settlement.rejected[0]?.code, code);
      assert.equal(settlement.rejected[0]?.status, status);
    });
  }

  test('429 waits the Retry-After seconds', async () => {
    const api = eventsApi(na1, [{ status: 429, body: { code: 'too_many_requests', message: 'Too many requests.' }, headers: { 'retry-after': '3' } }]);
    const settlement = await deliver({}, impressions(1));
    api.scope.done();
    assert.deepEqual(ids(settlement.pending), ['imp-0001']);
    assert.equal(settlement.throttled, true);
    assert.equal(settlement.retryAfterMs, 3000);
  });

  test('409 (the same Idempotency-Key still in flight; undocumented) is retried', async () => {
    const api = eventsApi(na1, [{ status: 409, body: { code: 'conflict', message: 'request in progress' } }]);
    const settlement = await deliver({}, impressions(1));
    api.scope.done();
    assert.deepEqual(ids(settlement.pending), ['imp-0001']);
    assert.equal(settlement.rejected.length, 0);
  });

  test('500 is retried', async () => {
    const api = eventsApi(na1, [{ status: 500, body: { code: 'server_error', message: 'Server error was encountered' } }]);
    const settlement = await deliver({}, impressions(1));
    api.scope.done();
    assert.deepEqual(ids(settlement.pending), ['imp-0001']);
    assert.equal(settlement.lastFailure?.status, 500);
    assert.equal(settlement.throttled, false);
  });
});
