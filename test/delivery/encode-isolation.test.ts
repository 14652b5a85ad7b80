import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import nock from 'nock';
import { z } from 'zod';
import type { EncodedRequest, HttpRequestSpec } from '../../src/connectors/connector.js';
import { defineHttpConnector } from '../../src/connectors/define-http-connector.js';
import { segmentConnector } from '../../src/connectors/segment/segment-connector.js';
import { captureBodies, deliverThrough, numberedImpression, numberedImpressions, rejectedIds, sortedIds, useNockedTransport } from '../helpers/connector-harness.js';

const origin = 'https://encode-test.example';

/** A connector whose encode throws as soon as a batch holds an impression keyed `poison…`. */
const fragileConnector = defineHttpConnector({
  type: 'fragile',
  displayName: 'Fragile',
  description: 'throws on poison keys',
  settingsSchema: z.object({ batchSize: z.number().int().default(100) }),
  secretSettings: [],
  exampleSettings: {},
  limits: (settings) => ({ maxItemsPerRequest: settings.batchSize, maxBytesPerRequest: 1_000_000, maxBatchWaitMs: 0, maxConcurrentRequests: 2 }),
  encode(items) {
    const poison = items.find((item) => item.key.startsWith('poison'));
    if (poison !== undefined) throw new RangeError(`cannot encode key ${poison.key}`);
    const body = JSON.stringify(items.map((item) => item.id));
    const request: EncodedRequest<HttpRequestSpec> = { itemIds: items.map((item) => item.id), bytes: body.length, request: { method: 'POST', url: `${origin}/batch`, headers: {}, body } };
    return { requests: [request], rejected: [], skipped: [] };
  },
});

describe('a connector that cannot encode one item rejects that item alone; its neighbours are delivered in the same attempt', () => {
  const transport = useNockedTransport();

  test('the delivery core finds the items encode throws on and rejects only those, with the error', async () => {
    const items = numberedImpressions(100);
    items[13] = numberedImpression(14, { key: 'poison-14' });
    items[77] = numberedImpression(78, { key: 'poison-78' });
    const sent: string[][] = [];
    nock(origin).post('/batch', captureBodies(sent)).times(20).reply(200, {});

    const settlement = await deliverThrough(fragileConnector, {}, items, transport());

    assert.deepEqual(rejectedIds(settlement), ['imp-0014', 'imp-0078']);
    for (const rejected of settlement.rejected) {
      assert.equal(rejected.code, 'invalid_payload');
      assert.match(rejected.reason, /cannot encode key poison-\d+/);
    }
    assert.equal(settlement.delivered, 98);
    assert.deepEqual(settlement.pending, []);
    assert.deepEqual(sent.flat().sort(), sortedIds(items.filter((item) => !item.key.startsWith('poison'))));
  });

  test('a time past the Date range: Segment cannot write its timestamp, the rest of the batch goes out', async () => {
    const items = numberedImpressions(10);
    items[4] = numberedImpression(5, { time: 9e15 });
    const sent: { batch: { messageId: string }[] }[] = [];
    nock('https://api.segment.io').post('/v1/batch', captureBodies(sent)).times(10).reply(200, { success: true });

    const settlement = await deliverThrough(segmentConnector, { writeKey: 'wk' }, items, transport());

    assert.deepEqual(rejectedIds(settlement), ['imp-0005']);
    assert.equal(settlement.rejected[0]?.code, 'invalid_payload');
    assert.match(settlement.rejected[0]?.reason ?? '', /Invalid time value/);
    assert.equal(settlement.delivered, 9);
    assert.deepEqual(settlement.pending, []);
    assert.equal(sent.flatMap((body) => body.batch).length, 9);
  });
});
