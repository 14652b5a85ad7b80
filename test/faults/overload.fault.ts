import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pollUntil } from '../helpers/processes.js';
import { type Fault, redisPrefix, samplePeakRss, setUpFault } from './harness.js';

const backlogLimit = 50;
const MB = 1024 * 1024;

/**
 * Scenario 5: ingest faster than delivery while the destination is down, then faster than
 * routing (no worker running): the ingest backlog stops at its limit with 503 + Retry-After,
 * the processes' memory stays flat, and everything accepted is delivered once the destination
 * is back.
 */
describe('overload with the destination down', () => {
  let fault: Fault;
  before(async () => {
    fault = await setUpFault('overload', { destinations: [{ id: 'hook' }], processEnv: { FLAGSTREAM_INGEST_BACKLOG_LIMIT: String(backlogLimit) } });
  });
  after(() => fault.teardown());

  test('the backlog is bounded, memory stays flat, and everything accepted is delivered after recovery', { timeout: 180_000 }, async () => {
    const hook = fault.receiver('hook');
    hook.setMode('5xx');
    const api = await fault.start('api', 'api');
    const worker = await fault.start('worker', 'worker');
    const baseline = new Map([
      [api.name, api.rss() ?? 0],
      [worker.name, worker.rss() ?? 0],
    ]);

    // 1. Faster than delivery: the destination refuses everything; deliveries pile up for retry.
    const backlog = fault.load('backlog');
    backlog.start({ accepted: 120, concurrency: 4, pauseMs: 0 });
    const peaks = await samplePeakRss([api, worker], backlog.finished());

    // 2. Faster than routing: with no worker running, waiting ingest batches reach the limit.
    const stopped = await worker.terminate(20_000);
    assert.ok(stopped.exited, 'the worker exits on SIGTERM');
    const flood = fault.load('flood');
    flood.start({ accepted: 100_000, concurrency: 4, pauseMs: 0 });
    await pollUntil(() => flood.countStatus(503) >= 20, { timeoutMs: 60_000, what: '503s once the ingest backlog is full' });
    // Requests (stored batches) waiting: a job holds the requests of one group commit.
    const waitingRequests = async (): Promise<number> => {
      const ids = await fault.redis.client.lrange(`${redisPrefix}:q:ingest:wait`, 0, -1);
      let requests = 0;
      for (const id of ids) {
        const data = JSON.parse((await fault.redis.client.hget(`${redisPrefix}:q:ingest:${id}`, 'data')) ?? '{}') as { batchIds?: string[] };
        requests += data.batchIds?.length ?? 1;
      }
      return requests;
    };
    const waitingAtLimit = await waitingRequests();
    const sentAtLimit = flood.sent.length;
    await pollUntil(() => flood.sent.length >= sentAtLimit + 100, { timeoutMs: 60_000, what: '100 more requests against the full backlog' });
    const floodPeaks = await samplePeakRss([api], flood.stop());
    const waitingAfter = await waitingRequests();
    // The limit is checked against waiting jobs × the requests per job of the newest few: near it, not exact.
    assert.ok(waitingAtLimit >= backlogLimit * 0.75 && waitingAtLimit <= backlogLimit * 1.5, `the backlog stopped near its limit of ${backlogLimit} (${waitingAtLimit} requests waiting)`);
    assert.equal(waitingAfter, waitingAtLimit, 'once full, the backlog does not grow');
    assert.deepEqual(flood.sent.slice(sentAtLimit).map((r) => r.status).filter((s) => s !== 503), [], 'past the limit every request is refused with 503');
    assert.deepEqual(flood.sent.filter((r) => r.status === 503 && !r.retryAfter).map((r) => r.index), [], 'every 503 carries Retry-After');

    // 3. Workers back, destination still down: routing drains the ingest backlog and ingest accepts again.
    const workerAgain = await fault.start('worker-again', 'worker');
    await pollUntil(async () => (await fault.redis.client.llen(`${redisPrefix}:q:ingest:wait`)) === 0, { timeoutMs: 60_000, what: 'routing to drain the ingest backlog' });
    const more = fault.load('more');
    more.start({ accepted: 60, concurrency: 4, pauseMs: 0 });
    const laterPeaks = await samplePeakRss([api, workerAgain], more.finished());

    // 4. The destination recovers: everything accepted arrives.
    hook.setMode('ok');
    let settleError: unknown;
    const settlePeaks = await samplePeakRss(
      [api, workerAgain],
      fault.settle({ timeoutMs: 120_000, maxArrivals: 2 }).catch((error: unknown) => (settleError = error)),
    );

    const report = (name: string, peak: number | undefined, base: number | undefined) => `${name} ${Math.round((base ?? 0) / MB)}→${Math.round((peak ?? 0) / MB)} MB`;
    console.log(
      `[faults] overload memory: ${report('api', Math.max(peaks.get('api') ?? 0, floodPeaks.get('api') ?? 0, laterPeaks.get('api') ?? 0, settlePeaks.get('api') ?? 0), baseline.get('api'))}, ` +
        `${report('worker', Math.max(peaks.get('worker') ?? 0, laterPeaks.get('worker-again') ?? 0, settlePeaks.get('worker-again') ?? 0), baseline.get('worker'))}; ` +
        `ingest backlog at the limit ${waitingAtLimit} (limit ${backlogLimit}), refused ${flood.countStatus(503)}`,
    );
    if (settleError !== undefined) throw settleError;
    // Generous bounds: what is flat here is "does not grow with the backlog", not a tight figure.
    for (const [name, peak] of [...peaks, ...floodPeaks, ...laterPeaks, ...settlePeaks]) {
      assert.ok(peak < 400 * MB, `${name} peaked at ${Math.round(peak / MB)} MB`);
      const base = baseline.get(name) ?? baseline.get(name.replace('-again', '')) ?? 0;
      assert.ok(peak - base < 200 * MB, `${name} grew by ${Math.round((peak - base) / MB)} MB`);
    }
  });
});
