import assert from 'node:assert/strict';
import { after, afterEach, beforeEach, describe, test } from 'node:test';
import type { StatsStore } from '../../src/stores/stats-store.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { waitForQuietLedger } from '../helpers/ledger.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

/** Ids received by a webhook receiver, with how many times each arrived. */
function receivedIds(receiver: HttpReceiver): Map<string, number> {
  const seen = new Map<string, number>();
  for (const request of receiver.requests) for (const item of JSON.parse(request.body) as { id: string }[]) seen.set(item.id, (seen.get(item.id) ?? 0) + 1);
  return seen;
}

/**
 * A stage that writes downstream work must be idempotent across its own retries: a routing job
 * that fails after its delivery jobs were written must not write them again when retried.
 */
describe('routing retries write each delivery once', () => {
  let app: TestApp;
  let receiver: HttpReceiver;

  beforeEach(async () => {
    receiver = await HttpReceiver.start();
    // Room for a 150 000-row request in the SDK's verbose row shape.
    app = await startTestApp({ workers: false, env: { FLAGSTREAM_MAX_BODY_BYTES: String(12 * 1024 * 1024) } });
    await app.apply({
      environments: [
        {
          id: 'env-r',
          sdkKeys: ['sdk-r'],
          flags: [{ name: 'flag_r', trafficType: 'user', trackImpressions: true }],
          destinations: [{ id: 'hook-r', type: 'webhook', settings: { url: `${receiver.url}/r`, batchSize: 1000, maxBatchWait: 0 } }],
        },
      ],
    });
  });
  afterEach(async () => {
    await app.close();
    await receiver.close();
  });
  after(() => undefined);

  test('a routing job failing after its shares were written delivers each impression once across its retries', async () => {
    // Fails twice after the delivery jobs exist (where the stack overflow of a huge request hit).
    let failures = 2;
    const stats = app.ctx.stats as { record: StatsStore['record'] };
    const record = stats.record.bind(app.ctx.stats);
    stats.record = async (environmentId, traffic) => {
      if (failures > 0) {
        failures -= 1;
        throw new Error('injected: Redis failed after the delivery jobs were written');
      }
      return record(environmentId, traffic);
    };
    app.startWorkers();
    const impressions = Array.from({ length: 5 }, (_, i) => ({ key: `user-${i}`, split: 'flag_r', treatment: 'on', time: 1_718_900_000_000 + i }));
    const response = await postJson(`${app.url}/v1/impressions`, { impressions }, { authorization: 'Bearer sdk-r' });
    assert.equal(response.status, 202);
    await app.waitForRoutings(1, 20_000);
    assert.equal(failures, 0, 'the routing job failed twice before it succeeded');
    const [flag] = await app.ctx.stats.flagStats('env-r');
    assert.equal(flag?.impressions, 5, 'traffic recorded once, although its first two writes failed');
    const ledger = await waitForQuietLedger(app);

    const seen = receivedIds(receiver);
    assert.equal(seen.size, 5);
    assert.deepEqual([...seen.values()], [1, 1, 1, 1, 1], 'each impression delivered exactly once');
    const environment = ledger.environments.find((e) => e.environmentId === 'env-r');
    assert.equal(environment?.received, 5);
    assert.equal(environment?.routed, 5, 'routed counted once, not once per attempt');
    assert.deepEqual(environment?.destinations.map((d) => [d.destinationId, d.routed, d.delivered]), [['hook-r', 5, 5]]);
  });

  test('an SDK bulk request of 150 000 impressions (one key each) is routed once and delivered once', async () => {
    app.startWorkers();
    const rows = Array.from({ length: 150_000 }, (_, i) => ({ k: `k${i}`, t: 'on', m: 1_718_900_000_000 + (i % 1000), c: 1_718_800_000_000, r: 'default rule' }));
    const response = await postJson(`${app.url}/api/testImpressions/bulk`, [{ f: 'flag_r', i: rows }], { authorization: 'Bearer sdk-r' });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    const ledger = await waitForQuietLedger(app, 120_000);

    const seen = receivedIds(receiver);
    assert.equal(seen.size, 150_000);
    assert.equal([...seen.values()].filter((times) => times > 1).length, 0, 'no impression delivered twice');
    assert.equal(app.completedRoutings.length, 1, 'routing succeeded on its first attempt');
    const destination = ledger.environments[0]?.destinations[0];
    assert.deepEqual([destination?.routed, destination?.delivered], [150_000, 150_000]);
    const [flag] = await app.ctx.stats.flagStats('env-r');
    assert.ok(flag !== undefined && Math.abs(flag.uniqueKeys - 150_000) < 150_000 * 0.02, `unique keys counted (HyperLogLog): ${flag?.uniqueKeys}`);
  });
});
