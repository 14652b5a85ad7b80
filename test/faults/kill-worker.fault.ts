import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Fault, setUpFault } from './harness.js';

/** Scenario 2a: a worker (its own role) dies with kill -9 while its deliveries are in flight. */
describe('kill -9 of a worker mid-delivery', () => {
  let fault: Fault;
  before(async () => {
    fault = await setUpFault('kill-worker', { destinations: [{ id: 'hook' }] });
  });
  after(() => fault.teardown());

  test('another worker takes its jobs over: nothing lost, nothing delivered more than twice', { timeout: 150_000 }, async () => {
    const hook = fault.receiver('hook');
    // A slow receiver, so the worker always has requests in flight.
    hook.setMode('slow', 300);
    await fault.start('api', 'api');
    const worker = await fault.start('worker', 'worker');
    const load = fault.load('sdk');
    load.start({ accepted: 120, concurrency: 3, pauseMs: 20 });
    await hook.waitFor(() => hook.deliveries >= 5 && hook.inFlight >= 1, 30_000, 'deliveries under way with one in flight');

    await worker.kill();
    await fault.start('worker-restarted', 'worker');
    await load.finished();
    assert.ok(hook.requestsByMode.slow > hook.deliveries, 'some request was cut off by the kill');

    await fault.settle({ maxArrivals: 2 });
  });
});
