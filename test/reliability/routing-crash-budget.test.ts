import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { pino } from 'pino';
import { DeliveryBatcher } from '../../src/routing/delivery-batcher.js';
import { StagingBuffer } from '../../src/routing/staging-buffer.js';
import { createRouteProcessor } from '../../src/worker/route-processor.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { waitForQuietLedger } from '../helpers/ledger.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

/**
 * A routing job whose worker dies after the job's outcome was recorded (only letting go of its
 * stored batch was left) comes back stalled. Past its crash budget it must not become a
 * `@routing` dead letter: everything it routed is already in delivery, and a dead letter would
 * count its impressions twice (found with worker kills under load).
 */
describe('routing crash budget after the routing was recorded', () => {
  let app: TestApp;
  let receiver: HttpReceiver;
  beforeEach(async () => {
    receiver = await HttpReceiver.start();
    app = await startTestApp({ workers: false });
    await app.apply({ environments: [{ id: 'env-k', sdkKeys: ['sdk-k'], destinations: [{ id: 'hook-k', type: 'webhook', settings: { url: `${receiver.url}/k`, maxBatchWait: 0 } }] }] });
  });
  afterEach(async () => {
    await app.close();
    await receiver.close();
  });

  test('the job completes without a dead letter; each impression is delivered once and the ledger balances', async () => {
    const { ctx } = app;
    const logger = pino({ level: 'silent' });
    const staging = new StagingBuffer({ redis: ctx.redis, keys: ctx.keys, queue: ctx.queues.delivery, config: () => ctx.config.current(), logger, clock: Date.now });
    const batcher = new DeliveryBatcher(ctx.queues.delivery, { maxWaitCapMs: 0, staging, ledger: ctx.ledger, batches: ctx.batches, maxHeldJobs: 1 });
    const route = createRouteProcessor({ config: ctx.config, batcher, stats: ctx.stats, ledger: ctx.ledger, batches: ctx.batches, deadLetters: ctx.deadLetters, metrics: ctx.metrics, logger, clock: Date.now, maxJobCrashes: 1 });
    const impressions = Array.from({ length: 3 }, (_, i) => ({ key: `user-${i}`, split: 'flag_k', treatment: 'on', time: 1_718_900_000_000 + i }));
    assert.equal((await postJson(`${app.url}/v1/impressions`, { impressions }, { authorization: 'Bearer sdk-k' })).status, 202);
    const [job] = await ctx.queues.ingest.getWaiting();
    assert.ok(job !== undefined);
    assert.equal((await route(job)).routed, 3);
    // Taken over after its worker died twice, past the budget of 1 crash.
    job.stalledCounter = 2;
    assert.deepEqual(await route(job), { routed: 0, dropped: 0, destinations: 0 });
    assert.deepEqual(await ctx.deadLetters.list({}), [], 'no @routing dead letter');
    await job.remove();

    app.startWorkers();
    await app.waitForDeliveries(1, 15_000, 'hook-k');
    const ledger = await waitForQuietLedger(app);
    const environment = ledger.environments.find((e) => e.environmentId === 'env-k');
    assert.deepEqual([environment?.received, environment?.routed, environment?.deadLettered], [3, 3, 0]);
    assert.equal(environment?.destinations[0]?.delivered, 3);
    const ids = receiver.requests.flatMap((request) => (JSON.parse(request.body) as { id: string }[]).map((i) => i.id));
    assert.equal(new Set(ids).size, 3);
    assert.equal(ids.length, 3);
  });
});
