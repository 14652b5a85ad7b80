import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

interface S3rverServer {
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}
type S3rverConstructor = new (options: { address: string; port: number; silent: boolean; directory: string; configureBuckets: { name: string }[] }) => S3rverServer;
// s3rver is untyped CommonJS.
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/**
 * S3 wants batches of up to 50 000 rows or 5 minutes, far longer than routing may hold its jobs:
 * impressions from many requests wait in the durable staging buffer and land in one object.
 */
describe('s3 end to end: impressions from many requests are staged into one object', () => {
  let app: TestApp;
  let server: S3rverServer;
  let directory: string;
  let endpoint: string;
  let reader: S3Client;

  before(async () => {
    directory = await mkdtemp(join(tmpdir(), 'flagstream-s3-e2e-'));
    server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: 'impressions' }] });
    const { port } = await server.run();
    endpoint = `http://127.0.0.1:${port}`;
    reader = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials });
    app = await startTestApp({ workerOptions: { stagingIntervalMs: 100 } });
    await app.apply({
      environments: [
        {
          id: 'env-s3',
          sdkKeys: ['sdk-s3'],
          destinations: [{ id: 'lake', type: 's3', settings: { bucket: 'impressions', prefix: 'flags/', endpoint, forcePathStyle: true, ...credentials, maxRows: 4, maxWait: 60_000 } }],
        },
      ],
    });
  });
  after(async () => {
    await app.close();
    reader.destroy();
    await server.close();
    await rm(directory, { recursive: true, force: true });
  });

  test('four one-impression requests become one gzip JSON-lines object when the batch is full', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i += 1) {
      const response = await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: `user-${i}`, split: 'new_checkout', treatment: 'on', time: Date.UTC(2026, 10, 24, 9, 30, i) }] }, { authorization: 'Bearer sdk-s3' });
      ids.push(...(response.body as { ids: string[] }).ids);
    }
    await app.waitForDeliveries(1, 10_000, 'lake');
    const listed = await reader.send(new ListObjectsV2Command({ Bucket: 'impressions', Prefix: 'flags/' }));
    const keys = (listed.Contents ?? []).map((o) => o.Key ?? '');
    assert.equal(keys.length, 1);
    assert.match(keys[0] ?? '', /^flags\/env=env-s3\/dt=2026-11-24\/hour=09\/[0-9a-f]{32}\.jsonl\.gz$/);
    const object = await reader.send(new GetObjectCommand({ Bucket: 'impressions', Key: keys[0] }));
    const rows = gunzipSync(Buffer.from(await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray()))
      .toString('utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.deepEqual(rows.map((r) => r.impressionId).sort(), [...ids].sort());
    assert.equal(rows[0]?.splitName, 'new_checkout');
  });

  test('a partial batch waits in Redis, not in memory, and is flushed when due', async () => {
    await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'user-late', split: 'new_checkout', treatment: 'off', time: Date.UTC(2026, 10, 24, 10, 0, 0) }] }, { authorization: 'Bearer sdk-s3' });
    await app.waitForState(async () => (await app.ctx.redis.llen(app.ctx.keys.stagingList('lake'))) === 1, 5000, 'the impression to be staged');
    assert.equal(app.completedDeliveries.filter((d) => d.job.name === 'lake').length, 1, 'not written yet: neither full nor old enough');
    // As at shutdown or when the wait has passed: the staged batch becomes a delivery job.
    assert.equal(await app.workers?.staging.flushDue(true), 1);
    await app.waitForDeliveries(2, 10_000, 'lake');
    const listed = await reader.send(new ListObjectsV2Command({ Bucket: 'impressions', Prefix: 'flags/env=env-s3/dt=2026-11-24/hour=10/' }));
    assert.equal(listed.Contents?.length, 1);
  });
});
