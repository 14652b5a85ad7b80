import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { waitForQuietLedger } from '../helpers/ledger.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

/**
 * Requests cut short by our own shutdown are not the destination's failure: they use no attempt,
 * do not count towards its circuit breaker, and the work goes back to the queue at once.
 */
describe('shutting down while a destination is slow', () => {
  let app: TestApp;
  let receiver: HttpReceiver;

  before(async () => {
    receiver = await HttpReceiver.start();
    app = await startTestApp();
    await app.apply({
      environments: [
        {
          id: 'env-s',
          sdkKeys: ['sdk-s'],
          // A breaker that would open on the first failure: a shutdown must not trip it.
          destinations: [{ id: 'hook-s', type: 'webhook', settings: { url: `${receiver.url}/s`, maxBatchWait: 0 }, delivery: { circuitBreakerThreshold: 1 } }],
        },
      ],
    });
  });
  after(async () => {
    await app.close();
    await receiver.close();
  });

  test('uses no attempt, leaves the destination healthy, and the next worker delivers', async () => {
    receiver.respond = (_request, index) => (index === 0 ? { status: 200, hang: true } : { status: 200 });
    const response = await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'u1', split: 'f', treatment: 'on', time: 1_718_900_000_000 }] }, { authorization: 'Bearer sdk-s' });
    assert.equal(response.status, 202);
    await receiver.waitForRequests(1, 15_000);
    await app.workers?.close({ abortInFlightAfterMs: 100 });

    const health = await app.ctx.health.get('hook-s');
    assert.equal(health.state, 'healthy');
    assert.equal(health.consecutiveFailures, 0, 'the aborted request is not a failure');
    const [job] = await app.ctx.queues.delivery.getJobs(['delayed', 'wait']);
    assert.equal(job?.attemptsMade, 0, 'no attempt used');
    assert.equal(app.failedDeliveries.length, 0);

    app.startWorkers();
    await receiver.waitForRequests(2, 15_000);
    const ledger = await waitForQuietLedger(app);
    assert.deepEqual(ledger.environments[0]?.destinations.map((d) => [d.routed, d.delivered]), [[1, 1]]);
  });
});
