import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import fc from 'fast-check';
import type { Impression } from '../../src/domain/impression.js';
import { countRows, decodeRows, decodeStoredBatch, encodeRows, encodeStoredBatch, impressionsOf } from '../../src/domain/stored-batch.js';
import type { DeliveryJobData } from '../../src/queues/queues.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { waitForQuietLedger } from '../helpers/ledger.js';
import { scanKeys } from '../helpers/redis.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';
import { onceName } from '../../src/stores/once-marks.js';

/** The stored batches under the app's prefix (not their reference counts or once markers). */
async function storedBatchKeys(app: TestApp): Promise<string[]> {
  const keys: string[] = [];
  await scanKeys(app.ctx.redis, `${app.ctx.keys.storedBatch('')}*`, async (_node, page) => keys.push(...page.filter((key) => !key.endsWith(':refs'))));
  return keys;
}

const impressions = (count: number) => Array.from({ length: count }, (_, i) => ({ key: `user-${i}`, split: 'flag_s', treatment: i % 2 === 0 ? 'on' : 'off', label: 'rule', time: 1_718_900_000_000 + i }));

describe('stored batches: each impression stored once, jobs carry references', () => {
  let app: TestApp;
  const receivers: HttpReceiver[] = [];

  beforeEach(async () => {
    for (let i = 0; i < 3; i += 1) receivers.push(await HttpReceiver.start());
    app = await startTestApp({ workerOptions: { quickRetries: 0 } });
  });
  afterEach(async () => {
    await app.close();
    for (const receiver of receivers.splice(0)) await receiver.close();
  });

  const apply = (labelsEnabled: boolean) =>
    app.apply({
      environments: [
        {
          id: 'env-s',
          sdkKeys: ['sdk-s'],
          labelsEnabled,
          flags: [{ name: 'flag_s', trafficType: 'account', trackImpressions: true }],
          destinations: receivers.map((receiver, i) => ({
            id: `hook-${i}`,
            type: 'webhook',
            settings: { url: `${receiver.url}/s`, batchSize: 1000, maxBatchWait: 0 },
            delivery: { retrySchedule: ['1h'] },
          })),
        },
      ],
    });

  test('three failing destinations share one stored batch; their jobs hold only row references', async () => {
    await apply(false);
    for (const receiver of receivers) receiver.respond = () => ({ status: 503, body: 'down' });
    const response = await postJson(`${app.url}/v1/impressions`, { impressions: impressions(40) }, { authorization: 'Bearer sdk-s' });
    assert.equal(response.status, 202);
    await app.waitForFailedDeliveries(3, 20_000);

    assert.equal((await storedBatchKeys(app)).length, 1, 'one stored batch for one request, whatever the destinations');
    const jobs = await app.ctx.queues.delivery.getJobs(['delayed', 'waiting', 'active'], 0, -1);
    assert.equal(jobs.length, 3);
    for (const job of jobs) {
      const data: DeliveryJobData = job.data;
      assert.equal(data.items, undefined, 'no impression copied into a delivery job');
      assert.deepEqual(data.refs?.map(([, rows]) => countRows(rows)), [40]);
    }
    // What was sent is the impression routing decided: label stripped, traffic type from the flag.
    const sent = JSON.parse(receivers[0]?.requests[0]?.body ?? '[]') as Impression[];
    assert.equal(sent.length, 40);
    assert.ok(sent.every((impression) => impression.label === undefined && impression.trafficTypeName === 'account' && impression.environmentId === 'env-s'));
  });

  test('a stored batch is deleted once every destination has settled it (delivered or dead-lettered)', async () => {
    await apply(true);
    receivers[1]!.respond = () => ({ status: 400, body: 'never' });
    receivers[2]!.respond = (_request, index) => (index === 0 ? { status: 503, body: 'once' } : { status: 200, body: 'ok' });
    const response = await postJson(`${app.url}/v1/impressions`, { impressions: impressions(25) }, { authorization: 'Bearer sdk-s' });
    assert.equal(response.status, 202);
    await app.waitForDeliveries(1, 20_000, 'hook-0');
    await app.waitForFailedDeliveries(1, 20_000, 'hook-2');
    // The retry of hook-2 waits an hour: promote it so that it settles now.
    for (const job of await app.ctx.queues.delivery.getJobs(['delayed'], 0, -1)) await job.promote();
    await app.waitForDeliveries(1, 20_000, 'hook-2');
    const ledger = await waitForQuietLedger(app);
    const byId = new Map(ledger.environments.flatMap((e) => e.destinations).map((d) => [d.destinationId, d]));
    assert.equal(byId.get('hook-0')?.delivered, 25);
    assert.equal(byId.get('hook-1')?.deadLettered, 25);
    assert.equal(byId.get('hook-2')?.delivered, 25);
    assert.deepEqual(await storedBatchKeys(app), [], 'nothing left once all three settled');
    const [letter] = await app.ctx.deadLetters.list({ destinationId: 'hook-1', limit: 10 });
    assert.equal(letter?.impressions.length, 25, 'the dead letter keeps its impressions, independent of the batch');
  });
});

describe('stored batch store: references counted once per transaction', () => {
  let app: TestApp;
  beforeEach(async () => {
    app = await startTestApp({ workers: false });
  });
  afterEach(async () => app.close());

  test('retaining or releasing twice under one name counts once; the batch goes at zero', async () => {
    const { batches, redis } = app.ctx;
    const multi = redis.multi();
    batches.writeIn(multi, 'b1', encodeStoredBatch([]));
    await multi.exec();
    const run = async (apply: (m: ReturnType<typeof redis.multi>) => void) => {
      const m = redis.multi();
      apply(m);
      await m.exec();
    };
    const refs = async () => redis.get(app.ctx.keys.storedBatchRefs('b1'));
    await run((m) => batches.retainIn(m, onceName('flush-1', 'routed'), new Map([['b1', 5]])));
    await run((m) => batches.retainIn(m, onceName('flush-1', 'routed'), new Map([['b1', 5]])));
    assert.equal(await refs(), '6', 'hold + 5, once');
    await batches.release(onceName('job', 'hold'), new Map([['b1', 1]]));
    await batches.release(onceName('job', 'hold'), new Map([['b1', 1]]));
    assert.equal(await refs(), '5');
    await run((m) => batches.releaseIn(m, onceName('j', 'settled:0'), new Map([['b1', 3]])));
    await run((m) => batches.releaseIn(m, onceName('j', 'settled:0'), new Map([['b1', 3]])));
    assert.equal(await refs(), '2', 'a re-sent settlement releases nothing more');
    assert.equal(await redis.exists(app.ctx.keys.storedBatch('b1')), 1);
    await batches.release(onceName('j', 'settled:1'), new Map([['b1', 2]]));
    assert.equal(await redis.exists(app.ctx.keys.storedBatch('b1'), app.ctx.keys.storedBatchRefs('b1')), 0);
  });
});

describe('stored batch codec', () => {
  const text = fc.string({ minLength: 1, maxLength: 12 });
  const impression = fc.record(
    {
      id: text,
      key: text,
      split: fc.constantFrom('a', 'b'),
      treatment: text,
      time: fc.integer({ min: 0, max: 2 ** 45 }),
      splitVersionNumber: fc.integer(),
      label: text,
      bucketingKey: text,
      properties: text,
      trafficTypeName: text,
      trafficTypeId: text,
      environmentId: fc.constantFrom('e1', 'e2'),
      environmentName: text,
      sdk: fc.constantFrom('nodejs', 'go'),
      sdkVersion: text,
      machineIp: text,
      machineName: text,
      receptionTimestamp: fc.constantFrom(1, 2),
    },
    { requiredKeys: ['id', 'key', 'split', 'treatment', 'time', 'environmentId', 'receptionTimestamp'] },
  );

  test('decoding gives back exactly the impressions encoded, shared context or not', () => {
    fc.assert(
      fc.property(fc.array(impression, { maxLength: 20 }), (list) => {
        const plain = list.map((item) => ({ ...item }) as Impression);
        assert.deepStrictEqual(impressionsOf(decodeStoredBatch(encodeStoredBatch(plain))), plain);
      }),
      { numRuns: 300 },
    );
  });

  test('row ranges round-trip', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.nat(200)), (rows) => {
        const sorted = [...rows].sort((a, b) => a - b);
        assert.deepEqual(decodeRows(encodeRows(sorted)), sorted);
        assert.equal(countRows(encodeRows(sorted)), sorted.length);
      }),
    );
  });
});
