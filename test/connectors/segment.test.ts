import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import nock from 'nock';
import { rateLimitResetMs, segmentConnector, segmentMaxBatchBytes } from '../../src/connectors/segment/segment-connector.js';
import type { BatchSettlement } from '../../src/delivery/deliver-batch.js';
import { createDestinationGuard } from '../../src/delivery/destination-guard.js';
import { createHttpTransport } from '../../src/delivery/http-transport.js';
import type { Impression } from '../../src/domain/impression.js';
import { deliverThrough } from '../helpers/connector-harness.js';
import { makeImpression } from '../helpers/impressions.js';

const now = 1_718_900_000_000;
const writeKey = 'test-write-key';
const basicAuth = `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`;

const impression = makeImpression;

const transport = createHttpTransport({ guard: createDestinationGuard(['127.0.0.1']), userAgent: 'test' });

function deliver(items: readonly Impression[], raw: Record<string, unknown> = {}): Promise<BatchSettlement> {
  return deliverThrough(segmentConnector, { writeKey, ...raw }, items, transport, 'segment-test');
}

interface CapturedBatch {
  readonly batch: { readonly messageId: string; readonly [field: string]: unknown }[];
  readonly [field: string]: unknown;
}

/** Replies `status` to every batch POST on `origin`, recording each body and its size. */
function segmentApi(origin: string, replies: readonly { status: number; body?: unknown; headers?: Record<string, string> }[]) {
  const bodies: CapturedBatch[] = [];
  const sizes: number[] = [];
  const headers: Record<string, string | string[] | undefined>[] = [];
  let scope = nock(origin);
  for (const reply of replies) {
    scope = scope.post('/v1/batch').reply(function (_uri, body) {
      bodies.push(body as CapturedBatch);
      sizes.push(Number(this.req.headers['content-length']));
      headers.push({ ...this.req.headers });
      return [reply.status, reply.body ?? { success: reply.status === 200 }, reply.headers ?? {}];
    });
  }
  return { scope, bodies, sizes, headers };
}

describe('segment connector', () => {
  before(() => {
    nock.disableNetConnect();
  });
  afterEach(() => {
    nock.cleanAll();
  });
  after(() => {
    nock.enableNetConnect();
    transport.close();
  });

  test('posts the documented batch body with Basic auth and one track event per impression', async () => {
    const user = impression({ key: 'user-42', bucketingKey: 'account-7', properties: '{"plan":"pro","treatment":"custom wins"}', sdk: 'nodejs', sdkVersion: '11.11.0' });
    const account = impression({ key: 'account-7', trafficTypeName: 'account' });
    const api = segmentApi('https://api.segment.io', [{ status: 200 }]);

    const settlement = await deliver([user, account], { identities: { user: 'userId', '*': 'anonymousId' } });

    api.scope.done();
    assert.equal(settlement.delivered, 2);
    assert.equal(api.headers[0]?.authorization, basicAuth);
    assert.equal(api.headers[0]?.['content-type'], 'application/json');
    assert.deepEqual(api.bodies[0], {
      batch: [
        {
          type: 'track',
          event: 'get_treatment',
          userId: 'user-42',
          messageId: user.id,
          timestamp: new Date(user.time).toISOString(),
          properties: {
            split: 'new_checkout',
            treatment: 'custom wins',
            key: 'user-42',
            time: user.time,
            environmentId: 'env-prod',
            impressionId: user.id,
            receptionTimestamp: 1_718_900_001_000,
            label: 'default rule',
            environmentName: 'Production',
            splitVersionNumber: 1_718_800_000_000,
            bucketingKey: 'account-7',
            trafficTypeName: 'user',
            sdk: 'nodejs',
            sdkVersion: '11.11.0',
            plan: 'pro',
          },
        },
        {
          type: 'track',
          event: 'get_treatment',
          anonymousId: 'account-7',
          messageId: account.id,
          timestamp: new Date(account.time).toISOString(),
          properties: {
            split: 'new_checkout',
            treatment: 'on',
            key: 'account-7',
            time: account.time,
            environmentId: 'env-prod',
            impressionId: account.id,
            receptionTimestamp: 1_718_900_001_000,
            label: 'default rule',
            environmentName: 'Production',
            splitVersionNumber: 1_718_800_000_000,
            trafficTypeName: 'account',
          },
        },
      ],
    });
    assert.equal(JSON.stringify(api.bodies[0]).includes(writeKey), false, 'the write key travels only in the Authorization header');
  });

  test('sends EU workspaces to events.eu1.segmentapis.com with a custom event name', async () => {
    const api = segmentApi('https://events.eu1.segmentapis.com', [{ status: 200 }]);

    const settlement = await deliver([impression()], { region: 'eu', eventName: 'split_impression' });

    api.scope.done();
    assert.equal(settlement.delivered, 1);
    assert.equal(api.bodies[0]?.batch[0]?.event, 'split_impression');
  });

  test('baseUrl wins over the region', async () => {
    const api = segmentApi('https://segment-proxy.example.com', [{ status: 200 }]);

    const settlement = await deliver([impression()], { region: 'eu', baseUrl: 'https://segment-proxy.example.com/' });

    api.scope.done();
    assert.equal(settlement.delivered, 1);
  });

  test('packs a large batch into requests of at most 500 KB', async () => {
    const padding = JSON.stringify({ note: 'x'.repeat(20_000) });
    const items = Array.from({ length: 40 }, () => impression({ properties: padding }));
    const api = segmentApi('https://api.segment.io', [{ status: 200 }, { status: 200 }]);

    const settlement = await deliver(items);

    api.scope.done();
    assert.equal(settlement.requests, 2);
    assert.equal(settlement.delivered, 40);
    for (const size of api.sizes) assert.ok(size <= segmentMaxBatchBytes, `request of ${size} bytes`);
    assert.ok((api.sizes[0] ?? 0) > segmentMaxBatchBytes - 25_000, 'the first request is filled up to the limit');
    const sent = api.bodies.flatMap((body) => body.batch.map((event) => event.messageId));
    assert.deepEqual(sent, items.map((item) => item.id));
  });

  test('dead-letters an event over 32 KB at encode time and sends the rest', async () => {
    const big = impression({ properties: JSON.stringify({ blob: 'y'.repeat(33_000) }) });
    const small = impression();
    const api = segmentApi('https://api.segment.io', [{ status: 200 }]);

    const settlement = await deliver([big, small]);

    api.scope.done();
    assert.equal(settlement.delivered, 1);
    assert.deepEqual(api.bodies[0]?.batch.map((event) => event.messageId), [small.id]);
    assert.equal(settlement.rejected.length, 1);
    assert.equal(settlement.rejected[0]?.item.id, big.id);
    assert.equal(settlement.rejected[0]?.code, 'payload_too_large');
  });

  test('skips impressions whose traffic type maps to no identity', async () => {
    const user = impression();
    const account = impression({ trafficTypeName: 'account' });
    const api = segmentApi('https://api.segment.io', [{ status: 200 }]);

    const settlement = await deliver([user, account], { identities: { user: 'userId' } });

    api.scope.done();
    assert.equal(settlement.delivered, 1);
    assert.equal(settlement.skipped, 1);
    assert.equal(settlement.rejected.length, 0);
    assert.deepEqual(api.bodies[0]?.batch.map((event) => event.messageId), [user.id]);
  });

  test('a 400 dead-letters the request as invalid_payload with Segment’s answer', async () => {
    const items = [impression(), impression()];
    const api = segmentApi('https://api.segment.io', [{ status: 400, body: { success: false, message: 'Invalid JSON' } }]);

    const settlement = await deliver(items);

    api.scope.done();
    assert.equal(settlement.delivered, 0);
    assert.deepEqual(settlement.rejected.map((r) => [r.item.id, r.code, r.status]), items.map((item) => [item.id, 'invalid_payload', 400]));
    assert.match(settlement.rejected[0]?.reason ?? '', /HTTP 400: .*Invalid JSON/);
    assert.equal(settlement.pending.length, 0);
  });

  test('a 429 throttles the destination for Retry-After', async () => {
    const items = [impression(), impression()];
    const api = segmentApi('https://api.segment.io', [{ status: 429, body: 'Too Many Requests', headers: { 'Retry-After': '30', 'X-RateLimit-Reset': '30' } }]);

    const settlement = await deliver(items);

    api.scope.done();
    assert.equal(settlement.throttled, true);
    assert.equal(settlement.retryAfterMs, 30_000);
    assert.deepEqual(settlement.pending.map((item) => item.id), items.map((item) => item.id));
    assert.equal(settlement.lastFailure?.status, 429);
  });

  test('a 429 without Retry-After waits for X-RateLimit-Reset', async () => {
    const api = segmentApi('https://api.segment.io', [{ status: 429, headers: { 'X-RateLimit-Reset': '12' } }]);

    const settlement = await deliver([impression()]);

    api.scope.done();
    assert.equal(settlement.throttled, true);
    assert.equal(settlement.retryAfterMs, 12_000);
  });

  test('X-RateLimit-Reset is read as seconds to wait, or as a Unix time when it can only be one', () => {
    assert.equal(rateLimitResetMs('12', now), 12_000);
    assert.equal(rateLimitResetMs(String(now / 1000 + 30), now), 30_000);
    assert.equal(rateLimitResetMs(undefined, now), undefined);
  });

  test('a 500 leaves the request pending for a retry', async () => {
    const items = [impression()];
    const api = segmentApi('https://api.segment.io', [{ status: 500, body: 'internal error' }]);

    const settlement = await deliver(items);

    api.scope.done();
    assert.equal(settlement.throttled, false);
    assert.equal(settlement.rejected.length, 0);
    assert.deepEqual(settlement.pending.map((item) => item.id), [items[0]?.id]);
    assert.equal(settlement.lastFailure?.status, 500);
  });

  test('a retry or replay sends the same messageIds, so Segment deduplicates it', async () => {
    const items = [impression(), impression(), impression()];
    const api = segmentApi('https://api.segment.io', [{ status: 503 }, { status: 200 }]);

    const first = await deliver(items);
    const replay = await deliver(first.pending);

    api.scope.done();
    assert.equal(first.pending.length, 3);
    assert.equal(replay.delivered, 3);
    const [firstIds, replayIds] = api.bodies.map((body) => body.batch.map((event) => event.messageId));
    assert.deepEqual(firstIds, items.map((item) => item.id));
    assert.deepEqual(replayIds, firstIds);
    assert.deepEqual(api.bodies[1], api.bodies[0], 'the replayed body is identical');
  });
});
