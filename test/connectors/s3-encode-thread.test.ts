import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { EncodedRequest } from '../../src/connectors/connector.js';
import { s3Connector, type S3PutRequest, S3SettingsSchema } from '../../src/connectors/s3/s3-connector.js';
import { closeS3EncodeThread } from '../../src/connectors/s3/s3-encode-thread.js';
import { TaskThread } from '../../src/connectors/s3/task-thread.js';
import type { Impression } from '../../src/domain/impression.js';

const now = 1_718_900_000_000;
const context = { now, destinationId: 's3-thread-test' };
const hour = 3_600_000;
/** 2024-06-20T16:00:00Z */
const hour16 = now - (now % hour);

/**
 * 2 600 impressions (so the thread gathers them from several parts) over two environments and
 * two hours, in no particular order, with ties in time, absent fields, and values CSV and JSON
 * must quote or escape.
 */
function mixedImpressions(): Impression[] {
  return Array.from({ length: 2_600 }, (_, n) => ({
    id: `imp-${String((n * 7919) % 2_600).padStart(5, '0')}`,
    key: n % 11 === 0 ? `user "${n}", the\r\nsecond line` : `user-${n % 300}`,
    split: `flag_${n % 5}`,
    treatment: n % 2 === 0 ? 'on' : 'off',
    ...(n % 5 === 0 ? {} : { label: 'default rule' }),
    // Hours 16 and 17; every third impression shares its time with a neighbour.
    time: hour16 + 10_000 + ((n * 104_729) % (2 * hour - 20_000)) - (n % 3 === 0 ? 0 : n % 3),
    ...(n % 4 === 0 ? {} : { splitVersionNumber: 1_718_800_000_000 + (n % 3) }),
    environmentId: n % 3 === 0 ? 'env-stage/ü' : 'env-prod',
    ...(n % 6 === 0 ? { properties: JSON.stringify({ plan: 'pro', note: 'a,"b"\n' }) } : {}),
    ...(n % 2 === 0 ? { bucketingKey: `account-${n % 40}`, sdk: 'nodejs', sdkVersion: '11.11.0', machineName: 'web-1', machineIp: '10.0.0.5' } : {}),
    trafficTypeName: 'user',
    receptionTimestamp: now + 5_000 + n,
  }));
}

/** A request as plain values, bodies as hex, to compare the two encoders' results exactly. */
function comparable(request: EncodedRequest<S3PutRequest>) {
  return { ...request, request: { ...request.request, body: Buffer.from(request.request.body).toString('hex') } };
}

describe('s3 encode thread: the objects are the synchronous encoder’s, byte for byte', () => {
  after(() => closeS3EncodeThread());

  for (const format of ['jsonl', 'csv', 'parquet'] as const) {
    for (const compression of ['gzip', 'none'] as const) {
      test(`${format}, compression ${compression}`, async () => {
        const settings = S3SettingsSchema.parse({ bucket: 'impressions', prefix: 'exports/', format, compression });
        const items = mixedImpressions();

        const inThread = await s3Connector.encodeOffLoop?.(items, settings, context);
        const onMainThread = s3Connector.encode(items, settings, context);

        assert.equal(onMainThread.requests.length, 4, 'one object per environment and hour');
        assert.deepEqual(inThread?.requests.map(comparable), onMainThread.requests.map(comparable));
        assert.deepEqual(inThread?.rejected, []);
        assert.deepEqual(inThread?.skipped, []);
      });
    }
  }

  test('what the encoder throws in the thread rejects encodeOffLoop with the same error (the core then isolates the impression)', async () => {
    // Parquet stores splitVersion as INT64: a fraction cannot be converted, here or in the thread.
    const items = [...mixedImpressions().slice(0, 3), { ...mixedImpressions()[3], splitVersionNumber: 1.5 } as Impression];
    const settings = S3SettingsSchema.parse({ bucket: 'impressions', format: 'parquet' });
    const thrown = (() => {
      try {
        s3Connector.encode(items, settings, context);
      } catch (error) {
        return error as Error;
      }
      assert.fail('encode did not throw');
    })();

    await assert.rejects(s3Connector.encodeOffLoop?.(items, settings, context) ?? Promise.resolve(), { name: thrown.name, message: thrown.message });
    // The thread is still there for the next batch.
    const next = await s3Connector.encodeOffLoop?.(items.slice(0, 3), settings, context);
    assert.deepEqual(next?.requests.map(comparable), s3Connector.encode(items.slice(0, 3), settings, context).requests.map(comparable));
  });

  test('a thread that fails under a batch leaves the batch to the main thread: the same objects', async () => {
    const settings = S3SettingsSchema.parse({ bucket: 'impressions', format: 'csv' });
    const items = mixedImpressions();

    const underWay = s3Connector.encodeOffLoop?.(items, settings, context);
    await closeS3EncodeThread();

    assert.deepEqual((await underWay)?.requests.map(comparable), s3Connector.encode(items, settings, context).requests.map(comparable));
  });

  test('two batches at once (two destinations) each get their own objects', async () => {
    const items = mixedImpressions();
    const jsonl = S3SettingsSchema.parse({ bucket: 'a', prefix: 'one/', format: 'jsonl' });
    const parquet = S3SettingsSchema.parse({ bucket: 'b', prefix: 'two/', format: 'parquet', compression: 'none' });

    const [first, second] = await Promise.all([s3Connector.encodeOffLoop?.(items, jsonl, context), s3Connector.encodeOffLoop?.(items.slice(100), parquet, context)]);

    assert.deepEqual(first?.requests.map(comparable), s3Connector.encode(items, jsonl, context).requests.map(comparable));
    assert.deepEqual(second?.requests.map(comparable), s3Connector.encode(items.slice(100), parquet, context).requests.map(comparable));
  });
});

describe('task thread: failures reject the tasks under way; the next task gets a fresh thread', () => {
  const echoEntry = new URL('../fixtures/task-thread/echo-worker.ts', import.meta.url);
  const threads: TaskThread[] = [];
  const thread = (entry = echoEntry): TaskThread => {
    const started = new TaskThread(entry, 'test');
    threads.push(started);
    return started;
  };
  after(() => Promise.all(threads.map((started) => started.close())));

  test('gathers the parts and answers with transferred bytes', async () => {
    assert.deepEqual(await thread().run([1, 2, 3], 'echo'), { parts: [1, 2, 3], bytes: Uint8Array.from([1, 2, 3]) });
  });

  test('an error thrown by the handler rejects that task with its name and message', async () => {
    const echo = thread();
    await assert.rejects(echo.run([], 'throw'), { name: 'TypeError', message: 'the handler refused' });
    assert.deepEqual(await echo.run([4], 'echo'), { parts: [4], bytes: Uint8Array.from([4]) });
  });

  test('a thread that exits rejects its task; the next task starts a new thread', async () => {
    const echo = thread();
    await assert.rejects(echo.run([1], 'exit'), { name: 'TaskThreadFailure', message: 'the test thread exited with code 3' });
    assert.deepEqual(await echo.run([5], 'echo'), { parts: [5], bytes: Uint8Array.from([5]) });
  });

  test('an entry that cannot load rejects the task', async () => {
    await assert.rejects(thread(new URL('../fixtures/task-thread/broken-worker.ts', import.meta.url)).run([1], 'echo'), { name: 'TaskThreadFailure', message: /^the test thread failed: this entry cannot start/ });
  });

  test('close rejects a task under way (here one that never ends)', async () => {
    const echo = thread();
    const rejected = assert.rejects(echo.run([], 'spin'), { name: 'TaskThreadFailure', message: 'the test thread was closed' });
    await echo.close();
    await rejected;
  });
});
