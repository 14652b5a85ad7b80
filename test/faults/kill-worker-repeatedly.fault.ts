import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type FlagstreamProcess, pollUntil } from '../helpers/processes.js';
import { failedJobs, type Fault, redisPrefix, setUpFault } from './harness.js';

const kills = 4;

/** Why BullMQ failed the first job of the delivery failed set. */
async function failedReason(fault: Fault): Promise<string> {
  const [id] = await fault.redis.client.zrange(`${redisPrefix}:q:delivery:failed`, 0, 0);
  return id === undefined ? 'no job' : `job ${id}: "${(await fault.redis.client.hget(`${redisPrefix}:q:delivery:${id}`, 'failedReason')) ?? ''}"`;
}

/**
 * Scenario 2b: the same delivery job is in flight each time its worker dies (kill -9), four
 * times over. BullMQ gives up on a job that stalled more than `maxStalledCount` times (default 1)
 * and parks it in the failed set: no delivery, no dead letter. flagstream must not lose it.
 */
describe('kill -9 of a worker repeatedly on the same work', () => {
  let fault: Fault;
  before(async () => {
    fault = await setUpFault('kill-worker-again', { destinations: [{ id: 'hook' }] });
  });
  after(() => fault.teardown());

  test(`the job survives ${kills} crashes in flight: delivered, never parked in the failed set`, { timeout: 150_000 }, async () => {
    const hook = fault.receiver('hook');
    // Slower than it takes to notice and kill, faster than the 1.5 s request timeout.
    hook.setMode('slow', 1000);
    await fault.start('api', 'api');
    const load = fault.load('one-request');
    await load.sendOne();
    assert.equal(load.accepted.length, 1);

    const inFlight: string[] = [];
    let stuck: string | undefined;
    for (let round = 1; round <= kills; round += 1) {
      const worker: FlagstreamProcess = await fault.start(`worker-${round}`, 'worker');
      // Each new worker takes the job over once the dead one's lock lapses; or BullMQ gave up on it.
      await pollUntil(async () => hook.inFlight >= 1 || (await failedJobs(fault.redis)).delivery > 0, { timeoutMs: 20_000, what: `the job in flight again (round ${round})` }).catch(
        (error: unknown) => (stuck = `round ${round}: ${error instanceof Error ? error.message : String(error)}`),
      );
      if (hook.inFlight === 0) {
        stuck ??= `round ${round}: the job is in BullMQ's delivery failed set (${await failedReason(fault)})`;
        await worker.kill();
        break;
      }
      inFlight.push(...hook.heldMessageIds());
      await worker.kill();
      await pollUntil(() => hook.inFlight === 0, { timeoutMs: 10_000, what: 'the cut request to close' });
    }

    hook.setMode('ok');
    await fault.start('worker-last', 'worker');
    // settle() reports a job parked in the failed set and what never arrived.
    const settled = await fault.settle({ maxArrivals: 2, timeoutMs: stuck === undefined ? 20_000 : 3000 }).then(
      () => undefined,
      (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
    );
    if (stuck !== undefined) throw new Error(`the job stopped being retried after ${inFlight.length} crash(es): ${stuck}\n${settled?.message ?? ''}`);
    if (settled !== undefined) throw settled;
    assert.equal(inFlight.length, kills);
    assert.equal(new Set(inFlight).size, 1, 'each crash hit the same batch (same webhook-id)');
  });
});
