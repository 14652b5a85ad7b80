import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AnyConnector, HttpRequestSpec, HttpResponse, SendResult } from '../../src/connectors/connector.js';
import { describeConnector } from '../../src/connectors/describe-connector.js';
import { builtInConnectors, ConnectorRegistry } from '../../src/connectors/registry.js';
import { makeImpression } from '../helpers/impressions.js';

/**
 * Every registered connector, run through the same checks: its declaration is sound, its
 * encoder accounts for every impression exactly once within its own limits and is deterministic,
 * and its classifier gives the core's canonical HTTP answers their canonical meaning.
 */
const now = 1_718_900_000_000;
const impressions = [
  ...Array.from({ length: 6 }, () => makeImpression({ trafficTypeName: 'user' })),
  makeImpression({ trafficTypeName: 'account', properties: JSON.stringify({ plan: 'pro', seats: 3 }) }),
  makeImpression({ trafficTypeName: 'user', label: undefined, bucketingKey: 'bucket-1' }),
];

const response = (status: number, body = '', headers: Record<string, string> = {}): SendResult<HttpResponse> => ({ ok: true, response: { status, body, headers } });

test('every built-in connector registers (unique type, example settings that parse, sane limits)', () => {
  const registry = new ConnectorRegistry(builtInConnectors);
  for (const connector of builtInConnectors) assert.equal(registry.get(connector.type), connector);
});

for (const connector of builtInConnectors as AnyConnector[]) {
  describe(`connector contract: ${connector.type}`, () => {
    const settings: unknown = connector.settingsSchema.parse(connector.exampleSettings);
    const limits = connector.limits(settings);

    test('declares parseable example settings, positive limits and a JSON Schema for its settings', () => {
      assert.ok(limits.maxItemsPerRequest >= 1 && Number.isInteger(limits.maxItemsPerRequest));
      assert.ok(limits.maxBytesPerRequest >= 1024);
      assert.ok(limits.maxBatchWaitMs >= 0);
      assert.ok(limits.maxConcurrentRequests >= 1);
      const description = describeConnector(connector);
      assert.equal((description.settings as { type?: string }).type, 'object');
      for (const secret of connector.secretSettings) {
        assert.ok(secret in ((description.settings as { properties: Record<string, unknown> }).properties ?? {}), `secret setting ${secret} is a setting`);
      }
      assert.ok(connector.displayName.length > 0 && connector.description.length > 0);
    });

    test('encode accounts for every impression exactly once, within its limits, deterministically', () => {
      const first = connector.encode(impressions, settings, { now, destinationId: 'contract' });
      const second = connector.encode(impressions, settings, { now, destinationId: 'contract' });
      assert.deepEqual(JSON.stringify(first), JSON.stringify(second), 'same impressions, same time → same requests');
      const seen = [...first.requests.flatMap((r) => r.itemIds), ...first.rejected.map((r) => r.itemId), ...first.skipped.map((s) => s.itemId)];
      assert.deepEqual([...seen].sort(), impressions.map((i) => i.id).sort());
      for (const request of first.requests) {
        assert.ok(request.itemIds.length <= limits.maxItemsPerRequest);
        assert.ok(request.bytes <= limits.maxBytesPerRequest);
        assert.ok(request.bytes > 0);
      }
    });

    if (connector.encodeOffLoop !== undefined) {
      test('encodeOffLoop gives what encode gives', async () => {
        const context = { now, destinationId: 'contract' };
        assert.deepEqual(await connector.encodeOffLoop?.(impressions, settings, context), connector.encode(impressions, settings, context));
      });
    }

    test('transport failures are retried', () => {
      const [request] = connector.encode(impressions.slice(0, 2), settings, { now, destinationId: 'contract' }).requests;
      assert.ok(request);
      for (const code of ['ECONNRESET', 'ETIMEDOUT', 'ECONNREFUSED']) {
        assert.equal(connector.classify({ ok: false, error: { code, message: code } }, request).kind, 'retry', code);
      }
      assert.equal(connector.classify({ ok: false, error: { code: 'DESTINATION_NOT_ALLOWED', message: 'private' } }, request).kind, 'rejected');
    });

    const [sample] = connector.encode(impressions.slice(0, 2), settings, { now, destinationId: 'contract' }).requests;
    const isHttp = typeof (sample?.request as HttpRequestSpec | undefined)?.url === 'string';
    test('canonical HTTP answers keep their meaning', { skip: isHttp ? false : 'not an HTTP connector (covered by its own tests)' }, () => {
      assert.ok(sample);
      const kind = (result: SendResult<HttpResponse>) => connector.classify(result, sample).kind;
      assert.equal(kind(response(500, 'oops')), 'retry');
      assert.equal(kind(response(503, 'maintenance')), 'retry');
      assert.equal(kind(response(413, '')), 'too-large');
      const throttled = connector.classify(response(429, '', { 'retry-after': '7' }), sample);
      assert.ok(throttled.kind === 'throttled' || (throttled.kind === 'partial' && [...throttled.byItem.values()].every((o) => o.kind === 'throttled' || o.kind === 'retry')));
      if (throttled.kind === 'throttled') assert.equal(throttled.retryAfterMs, 7000);
      const auth = connector.classify(response(401, 'unauthorized'), sample);
      assert.equal(auth.kind, 'rejected');
      if (auth.kind === 'rejected') assert.equal(auth.code, 'destination_auth');
      assert.equal(kind(response(400, 'bad request')), 'rejected');
    });
  });
}
