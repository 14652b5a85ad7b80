import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pollUntil } from '../helpers/processes.js';
import { type Fault, setUpFault } from './harness.js';

/**
 * Scenario 3: Redis (appendonly) is shut down under load and started again on the same port and
 * folder. While it is down, ingest answers 503 with Retry-After; nothing accepted is lost.
 */
describe('a Redis restart under load', () => {
  let fault: Fault;
  before(async () => {
    fault = await setUpFault('redis-restart', { destinations: [{ id: 'hook' }] });
  });
  after(() => fault.teardown());

  test('ingest answers 503 + Retry-After while Redis is down; everything accepted is delivered', { timeout: 150_000 }, async () => {
    await fault.start('worker', 'worker');
    const api = await fault.start('api', 'api');
    const load = fault.load('sdk', { requestTimeoutMs: 20_000 });
    // Until stopped: the load must still be going when Redis is down and after it is back.
    load.start({ accepted: 100_000, concurrency: 4, pauseMs: 20 });
    await pollUntil(() => load.accepted.length >= 40, { timeoutMs: 30_000, what: '40 accepted requests before the restart' });

    await fault.redis.shutdown();
    const downAt = load.sent.length;
    // A client arriving now is told at once: 503 + Retry-After. (A separate client: the load's
    // requests that were under way when Redis went away may wait for its return.)
    const probe = fault.load('probe', { requestTimeoutMs: 5000 });
    await pollUntil(async () => (await probe.sendOne()).status === 503, {
      timeoutMs: 20_000,
      everyMs: 200,
      what: () => `ingest to answer 503 while Redis is down (probes: ${probe.statusSummary()}; load since: ${load.statusSummary(downAt) || 'none'})`,
    });
    const duringOutage = [...load.sent.slice(downAt), ...probe.sent].filter((r) => r.status !== 'error');
    await fault.redis.startServer();
    const upAt = load.sent.length;

    await pollUntil(async () => (await fetch(`${api.url}/readyz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined))?.status === 200, {
      timeoutMs: 20_000,
      what: '/readyz to answer 200 again',
    });
    await pollUntil(() => load.sent.slice(upAt).filter((r) => r.status === 200).length >= 40, { timeoutMs: 30_000, what: '40 requests accepted after the restart' });
    await load.stop();

    const refusals = [...load.sent, ...probe.sent].filter((r) => r.status === 503);
    assert.deepEqual(
      refusals.filter((r) => r.retryAfter === null || r.retryAfter === undefined).map((r) => r.index),
      [],
      'every 503 carries Retry-After',
    );
    assert.deepEqual(
      [...new Set(duringOutage.map((r) => r.status))].filter((status) => status !== 503 && status !== 200),
      [],
      'while Redis was down ingest answered 503 (or, for requests already under way, 200)',
    );
    assert.deepEqual(
      [...load.sent, ...probe.sent].filter((r) => typeof r.status === 'number' && r.status >= 500 && r.status !== 503).map((r) => r.status),
      [],
      'no 5xx other than 503',
    );
    await fault.settle({ timeoutMs: 60_000 });
  });
});
