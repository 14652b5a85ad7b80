import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { z } from 'zod';
import { defineHttpConnector } from '../../src/connectors/define-http-connector.js';
import { createDestinationGuard } from '../../src/delivery/destination-guard.js';
import { createHttpTransport } from '../../src/delivery/http-transport.js';
import { deliverThrough, numberedImpressions } from '../helpers/connector-harness.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { webhookConnector } from '../../src/connectors/webhook/webhook-connector.js';

describe('destinations may not reach private or loopback addresses unless allowlisted', () => {
  const refuses = (guard: ReturnType<typeof createDestinationGuard>, host: string, address: string) => assert.throws(() => guard.check(host, address), /private or loopback; add it to FLAGSTREAM_DESTINATION_ALLOWLIST/);

  test('private, loopback, link-local and IPv4-mapped addresses are refused by default; public ones pass', () => {
    const guard = createDestinationGuard([]);
    for (const address of ['127.0.0.1', '10.1.2.3', '172.16.0.9', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1']) {
      refuses(guard, 'hooks.example.com', address);
    }
    guard.check('hooks.example.com', '93.184.216.34');
    guard.check('hooks.example.com', '2606:2800:220:1:248:1893:25c8:1946');
  });

  test('the allowlist takes host names, addresses and CIDRs', () => {
    const guard = createDestinationGuard(['hooks.internal', '127.0.0.1', '10.0.0.0/8', ' ']);
    guard.check('hooks.internal', '192.168.5.5');
    guard.check('localhost', '127.0.0.1');
    guard.check('any', '10.200.3.4');
    refuses(guard, 'other.internal', '192.168.5.5');
    refuses(guard, 'localhost', '127.0.0.2');
  });

  test('a delivery to a loopback receiver without the allowlist is dead-lettered as destination_not_allowed, and sends nothing', async () => {
    const receiver = await HttpReceiver.start();
    const transport = createHttpTransport({ guard: createDestinationGuard([]), userAgent: 'test' });
    try {
      for (const url of [`${receiver.url}/hook`, receiver.url.replace('127.0.0.1', 'localhost')]) {
        const settlement = await deliverThrough(webhookConnector, { url }, numberedImpressions(2), transport);
        assert.equal(settlement.rejected.length, 2, url);
        assert.equal(settlement.rejected[0]?.code, 'destination_not_allowed');
      }
      assert.equal(receiver.requests.length, 0);
    } finally {
      transport.close();
      await receiver.close();
    }
  });

  test('the transport reports a refused address to every connector the same way', () => {
    const connector = defineHttpConnector({ type: 'x', displayName: 'x', description: 'x', settingsSchema: z.object({}), secretSettings: [], exampleSettings: {}, limits: () => ({ maxItemsPerRequest: 1, maxBytesPerRequest: 1024, maxBatchWaitMs: 0, maxConcurrentRequests: 1 }), encode: () => ({ requests: [], rejected: [], skipped: [] }) });
    const outcome = connector.classify({ ok: false, error: { code: 'DESTINATION_NOT_ALLOWED', message: 'no' } }, { itemIds: [], bytes: 0, request: { method: 'POST', url: 'http://x', headers: {}, body: '' } });
    assert.deepEqual(outcome, { kind: 'rejected', code: 'destination_not_allowed', reason: 'no' });
  });
});
