import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { UnrecoverableError, Worker } from 'bullmq';
import { pino } from 'pino';
import { routingStage } from '../../src/domain/dead-letter.js';
import { deliveryQueueName, ingestQueueName } from '../../src/queues/queues.js';
import { sweepFailedJobs } from '../../src/worker/failed-job-sweeper.js';
import { makeImpression } from '../helpers/impressions.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

/**
 * The last line of "every failure ends": a job failed by something outside flagstream's
 * processors (here a bare BullMQ worker) does not stay in a failed set; the sweep turns it into
 * a dead letter with BullMQ's reason and removes it.
 */
describe('the failed-job sweep', () => {
  let app: TestApp;

  before(async () => {
    app = await startTestApp({ workers: false });
  });
  after(async () => {
    await app.close();
  });

  test('turns failed delivery and ingest jobs into dead letters and empties both failed sets', async () => {
    const { queues } = app.ctx;
    const items = [makeImpression(), makeImpression()];
    await queues.delivery.add('hook-x', { destinationId: 'hook-x', environmentId: 'env-x', items }, { attempts: 1 });
    await queues.ingest.add('impressions', { environmentId: 'env-x', impressions: [makeImpression()] }, { attempts: 1 });
    const failing = async () => {
      throw new UnrecoverableError('lost its lock to a bug');
    };
    // BullMQ does not close connections it is given: these are closed below.
    const connections = [app.ctx.redis.duplicate(), app.ctx.redis.duplicate()];
    const workers = [deliveryQueueName, ingestQueueName].map((name, index) => new Worker(name, failing, { connection: connections[index] ?? app.ctx.redis.duplicate(), prefix: app.ctx.keys.bullPrefix }));
    await app.waitForState(async () => (await queues.delivery.getFailedCount()) === 1 && (await queues.ingest.getFailedCount()) === 1, 15_000, 'one failed job in each queue');
    await Promise.all(workers.map((worker) => worker.close()));
    for (const connection of connections) connection.disconnect();

    const swept = await sweepFailedJobs({ queues, deadLetters: app.ctx.deadLetters, batches: app.ctx.batches, logger: pino({ level: 'silent' }), clock: Date.now });
    assert.equal(swept, 2);
    assert.deepEqual([await queues.delivery.getFailedCount(), await queues.ingest.getFailedCount()], [0, 0]);
    const letters = await app.ctx.deadLetters.list({});
    const delivery = letters.find((l) => l.destinationId === 'hook-x');
    assert.equal(delivery?.reason, 'internal_error');
    assert.match(delivery?.error.message ?? '', /lost its lock to a bug/);
    assert.deepEqual(delivery?.impressions.map((i) => i.id), items.map((i) => i.id));
    assert.equal(letters.find((l) => l.destinationId === routingStage)?.impressions.length, 1, 'the ingest job, replayable through routing');
    // Sweeping again finds nothing.
    assert.equal(await sweepFailedJobs({ queues, deadLetters: app.ctx.deadLetters, batches: app.ctx.batches, logger: pino({ level: 'silent' }), clock: Date.now }), 0);
  });
});
