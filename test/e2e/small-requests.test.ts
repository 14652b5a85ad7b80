import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

/**
 * Many one-impression requests: routing jobs wait for their destination's batch to fill, but
 * once every routing slot is waiting no further job can come to fill it, so the batch is written
 * at once instead of after the batch wait (which would cap throughput at concurrency / wait).
 */
describe('coalescing small requests', () => {
  let app: TestApp;
  let receiver: HttpReceiver;

  before(async () => {
    receiver = await HttpReceiver.start();
    app = await startTestApp({ env: { FLAGSTREAM_ROUTING_CONCURRENCY: '4', FLAGSTREAM_BATCH_WAIT_CAP_MS: '60000' } });
    await app.apply({ environments: [{ id: 'env-small', sdkKeys: ['sdk-small'], destinations: [{ id: 'hook-small', type: 'webhook', settings: { url: `${receiver.url}/small`, maxBatchWait: 30_000 } }] }] });
  });
  after(async () => {
    await app.close();
    await receiver.close();
  });

  test('when every routing slot waits on a batch, the batch is written without waiting out its 30 s', async () => {
    // One after another: requests sent at once would be committed together, as fewer routing jobs.
    for (let i = 0; i < 4; i += 1) {
      await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: `user-${i}`, split: 'f', treatment: 'on', time: 1718900000000 + i }] }, { authorization: 'Bearer sdk-small' });
    }
    await receiver.waitFor(() => receiver.impressions().length === 4, 10_000, 'all four impressions well before the 30 s batch wait');
    assert.ok(receiver.requests.length <= 4);
  });
});
