import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import type { Impression } from '../../src/domain/impression.js';
import { createIngestService, type IngestService } from '../../src/ingest/accept-impressions.js';
import { ingestJobBatchIds } from '../../src/queues/queues.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { impressionsOfIngestJobs } from '../helpers/ingest-jobs.js';
import { readLedger, waitForQuietLedger } from '../helpers/ledger.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

const receivedAt = 1_800_000_000_000;

/** `count` impressions of request `request`, each request from its own machine (its own stored context). */
function request(requestIndex: number, count: number): Impression[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `r${requestIndex}-i${i}`,
    key: `user-${requestIndex}-${i}`,
    // Every third impression is of a flag whose tracking is off: the rows routed are not contiguous.
    split: i % 3 === 2 ? 'flag_untracked' : 'flag_g',
    treatment: i % 2 === 0 ? 'on' : 'off',
    time: 1_718_900_000_000 + i,
    environmentId: 'env-g',
    environmentName: 'Group',
    machineName: `host-${requestIndex}`,
    receptionTimestamp: receivedAt,
  }));
}

function ingestService(app: TestApp): IngestService {
  const { ctx } = app;
  return createIngestService({ stores: ctx, redis: ctx.redis, metrics: ctx.metrics, backlogLimit: 1_000, clock: ctx.clock });
}

const environment = (receiverUrl?: string) => ({
  id: 'env-g',
  sdkKeys: ['sdk-g'],
  flags: [
    { name: 'flag_g', trackImpressions: true },
    { name: 'flag_untracked', trackImpressions: false },
  ],
  destinations: receiverUrl === undefined ? [] : [{ id: 'hook-g', type: 'webhook', settings: { url: `${receiverUrl}/g`, maxBatchWait: 0 } }],
});

describe('group commit: requests that arrive while a commit is in flight go together in the next one', () => {
  describe('what is enqueued', () => {
    let app: TestApp;
    before(async () => {
      // No workers: the ingest jobs stay where the test can read them.
      app = await startTestApp({ workers: false });
      await app.apply({ environments: [environment()] });
    });
    after(() => app.close());
    afterEach(() => app.ctx.queues.ingest.obliterate({ force: true }));

    test('one request alone is one job; requests arriving during its commit are one more job, in order, each its own stored batch', async () => {
      const service = ingestService(app);
      await service.accept('env-g', request(0, 5), 'native');
      // Five at once: the first is committed alone at once, the four that arrive meanwhile together.
      const accepted = await Promise.all([1, 2, 3, 4, 5].map((r) => service.accept('env-g', request(r, 3 + r), 'native')));
      assert.deepEqual(accepted, [4, 5, 6, 7, 8]);

      const jobs = await app.ctx.queues.ingest.getWaiting(0, -1);
      assert.deepEqual(jobs.map((job) => [ingestJobBatchIds(job.data).length, job.data.count]).sort(), [
        [1, 4],
        [1, 5],
        [4, 5 + 6 + 7 + 8],
      ]);
      const group = jobs.find((job) => ingestJobBatchIds(job.data).length === 4);
      assert.ok(group !== undefined);
      // The group's batches in the order their requests came, each with its own context.
      const grouped = await impressionsOfIngestJobs(app.ctx.batches, [group]);
      const expected = [2, 3, 4, 5].flatMap((r) => request(r, 3 + r));
      assert.deepEqual(
        grouped.map((impression) => [impression.id, impression.machineName]),
        expected.map((impression) => [impression.id, impression.machineName]),
      );
      const ledger = await readLedger(app);
      assert.equal(ledger.environments.find((e) => e.environmentId === 'env-g')?.received, 5 + 4 + 5 + 6 + 7 + 8);
    });
  });

  describe('what is delivered', () => {
    let app: TestApp;
    let receiver: HttpReceiver;
    before(async () => {
      receiver = await HttpReceiver.start();
      app = await startTestApp({});
      await app.apply({ environments: [environment(receiver.url)] });
    });
    after(async () => {
      await app.close();
      await receiver.close();
    });

    test('a job of several stored batches delivers each tracked impression once, with its own request context, and releases every batch', async () => {
      const service = ingestService(app);
      const requests = [0, 1, 2, 3].map((r) => request(r, 10 + r));
      await Promise.all(requests.map((impressions) => service.accept('env-g', impressions, 'native')));
      const tracked = requests.flat().filter((impression) => impression.split === 'flag_g');
      await receiver.waitFor(() => receiver.impressions().length >= tracked.length, 15_000, 'every tracked impression');
      const delivered = receiver.impressions().map((impression) => [impression.id, impression.machineName]);
      assert.deepEqual(delivered.sort(), tracked.map((impression) => [impression.id, impression.machineName]).sort());
      const ledger = await waitForQuietLedger(app);
      const env = ledger.environments.find((e) => e.environmentId === 'env-g');
      assert.equal(env?.received, 10 + 11 + 12 + 13);
      assert.equal(env?.routed, tracked.length);
      // Every stored batch was released once its rows settled: none is left.
      const left = await app.ctx.redis.keys(`${app.ctx.keys.storedBatch('')}*`);
      assert.deepEqual(left, []);
    });
  });
});
