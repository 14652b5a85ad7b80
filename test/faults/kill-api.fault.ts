import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pollUntil } from '../helpers/processes.js';
import { type Fault, setUpFault } from './harness.js';

/** Scenario 1: the API process (its own role) dies with kill -9 while SDKs are sending. */
describe('kill -9 of the API process mid-load', () => {
  let fault: Fault;
  before(async () => {
    fault = await setUpFault('kill-api', { destinations: [{ id: 'hook' }] });
  });
  after(() => fault.teardown());

  test('every request it accepted is delivered, and the restarted API accepts again', { timeout: 150_000 }, async () => {
    await fault.start('worker', 'worker');
    const api = await fault.start('api', 'api');
    // Clients keep sending to the same address while the API is down and after it is back.
    const load = fault.load('sdk', { targets: () => [api.url] });
    // Until stopped: the load must still be going when the API dies and after it is back.
    load.start({ accepted: 100_000, concurrency: 4, pauseMs: 20 });
    await pollUntil(() => load.accepted.length >= 40, { timeoutMs: 30_000, what: '40 accepted requests before the kill' });

    await api.kill();
    const killedAt = load.sent.length;
    await pollUntil(() => load.sent.slice(killedAt).some((r) => r.status === 'error'), { timeoutMs: 10_000, what: 'a client to find the API gone' });
    const restarted = await fault.start('api-restarted', 'api', { port: api.port });
    await pollUntil(() => load.sent.slice(killedAt).filter((r) => typeof r.status === 'number' && r.status < 300).length >= 40, {
      timeoutMs: 30_000,
      what: '40 requests accepted by the restarted API',
    });
    await load.stop();
    assert.ok(restarted.alive);

    await fault.settle();
  });
});
