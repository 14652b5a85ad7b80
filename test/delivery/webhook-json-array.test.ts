import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import type { HttpClient, HttpRequestSpec } from '../../src/connectors/connector.js';
import { webhookConnector } from '../../src/connectors/webhook/webhook-connector.js';
import { deliverBatch } from '../../src/delivery/deliver-batch.js';
import type { Impression } from '../../src/domain/impression.js';
import { type DecodedBatch, decodeStoredBatch, encodeRows, encodeStoredBatch, type RoutingView } from '../../src/domain/stored-batch.js';
import type { DeliveryJobData } from '../../src/queues/queues.js';
import type { StoredBatchStore } from '../../src/stores/stored-batch-store.js';
import { resolveJobItems } from '../../src/worker/job-items.js';
import { numberedImpression } from '../helpers/connector-harness.js';

/**
 * The webhook's body written from stored rows (JSON array writer + encodeJsonArray) against its
 * reference (encode: JSON.stringify of the impressions built from the rows): the same requests,
 * byte for byte, signed over those bytes, split alike by the byte limit.
 */
const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

/** A batch store holding decoded batches in memory: resolveJobItems only loads. */
function memoryBatches(batches: ReadonlyMap<string, DecodedBatch>): StoredBatchStore {
  return {
    load: async (ids: Iterable<string>) => new Map([...ids].flatMap((id) => (batches.has(id) ? [[id, batches.get(id) as DecodedBatch] as const] : []))),
  } as unknown as StoredBatchStore;
}

function recordingClient(sent: HttpRequestSpec[]): HttpClient {
  return {
    request: async (spec) => {
      sent.push(spec);
      return { status: 200, headers: {}, body: '' };
    },
  };
}

async function deliverBoth(data: DeliveryJobData, batches: ReadonlyMap<string, DecodedBatch>, rawSettings: Record<string, unknown>) {
  const settings = webhookConnector.settingsSchema.parse(rawSettings);
  // One instant for both, and a recent one: the verifier rejects old timestamps.
  const now = Date.now();
  const results: { sent: HttpRequestSpec[]; delivered: number; rejected: number }[] = [];
  for (const fromRows of [false, true]) {
    const resolved = await resolveJobItems(memoryBatches(batches), data);
    const sent: HttpRequestSpec[] = [];
    const settlement = await deliverBatch(
      resolved.items,
      { destinationId: 'hook', connector: webhookConnector, settings, limits: webhookConnector.limits(settings), client: recordingClient(sent), timeoutMs: 5000, maxConcurrentRequests: 1 },
      { now: () => now, quickRetries: 0, ...(fromRows ? { jsonArray: resolved.jsonArray } : {}) },
    );
    results.push({ sent, delivered: settlement.delivered, rejected: settlement.rejected.length });
  }
  return results as [(typeof results)[number], (typeof results)[number]];
}

const awkward: Partial<Impression>[] = [
  { key: 'ключ "quoted" \\ back', label: 'line\nbreak\u0000', properties: '{"plan":"gold","nested":{"a":[1,null,"é"]}}' },
  { key: '😀 emoji', bucketingKey: 'b\ud800lone', splitVersionNumber: -5 },
  { split: 'constructor', treatment: 'off', label: undefined, trafficTypeName: undefined },
  { split: 'other_flag', trafficTypeName: undefined, machineIp: '10.0.0.9' },
];

function storedBatch(first: number, count: number): DecodedBatch {
  const impressions = Array.from({ length: count }, (_, i) => {
    const impression: Record<string, unknown> = { ...numberedImpression(first + i), ...awkward[i % 7] };
    for (const [field, value] of Object.entries(impression)) if (value === undefined) delete impression[field];
    return impression as unknown as Impression;
  });
  return decodeStoredBatch(encodeStoredBatch(impressions));
}

describe('webhook body written from stored rows', () => {
  const batches = new Map([
    ['batch-a', storedBatch(1, 40)],
    ['batch-b', storedBatch(101, 9)],
  ]);
  const views: (RoutingView | undefined)[] = [undefined, { labels: true, trafficTypes: {} }, { labels: false, trafficTypes: { other_flag: ['account', 'tt-7'] as const, new_checkout: ['user', 'tt-1'] as const, constructor: ['x'] as const } }];
  const inline = [numberedImpression(900, { key: 'inline "replayed" é' })];

  for (const view of views) {
    test(`the same requests, bytes and signatures as encode (view ${JSON.stringify(view)})`, async () => {
      const data: DeliveryJobData = {
        destinationId: 'hook',
        environmentId: 'env-prod',
        items: inline,
        refs: [
          ['batch-a', encodeRows([0, 1, 2, 3, 4, 5, 6, 7, 8, 20, 21, 39])],
          ['batch-b', encodeRows([8, 3, 2].sort((a, b) => a - b))],
        ],
        ...(view === undefined ? {} : { view }),
      };
      const [reference, fromRows] = await deliverBoth(data, batches, { url: 'https://hooks.example.com/in', secret, batchSize: 7 });
      assert.equal(reference.sent.length, 3);
      assert.equal(fromRows.delivered, 16);
      assert.deepEqual(fromRows.sent, reference.sent);
      const verifier = new Webhook(secret);
      for (const spec of fromRows.sent) {
        assert.ok(Buffer.isBuffer(spec.body));
        verifier.verify(spec.body.toString('utf8'), spec.headers);
      }
      // The view applies to rows (inline impressions had theirs applied when they were made inline).
      const rows = fromRows.sent.flatMap((spec) => JSON.parse(spec.body.toString()) as Impression[]).filter((item) => item.id !== inline[0]?.id);
      assert.equal(rows.length, 15);
      const labels = rows.map((item) => item.label);
      assert.equal(labels.some((label) => label !== undefined), view?.labels !== false);
    });
  }

  test('bodies over the byte limit are split alike, down to what fits', async () => {
    const data: DeliveryJobData = { destinationId: 'hook', environmentId: 'env-prod', refs: [['batch-a', '0-39']], view: views[2] as RoutingView };
    const [reference, fromRows] = await deliverBoth(data, batches, { url: 'https://hooks.example.com/in', secret, batchSize: 40, maxBodyBytes: 2048 });
    assert.ok(reference.sent.length > 4, `split into ${reference.sent.length}`);
    assert.deepEqual(fromRows.sent, reference.sent);
    assert.ok(fromRows.sent.every((spec) => spec.body.length <= 2048));
    assert.equal(fromRows.delivered + fromRows.rejected, 40);
    assert.equal(fromRows.delivered, reference.delivered);
  });
});
