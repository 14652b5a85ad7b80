import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fetchLedger } from '../helpers/ledger.js';
import { pollUntil, runFlagstreamCli } from '../helpers/processes.js';
import { adminToken, type Fault, redisPrefix, setUpFault } from './harness.js';

/** Scenario 7: two API and two worker processes on one Redis, SDK traffic spread over both APIs. */
describe('two API and two worker processes at once', () => {
  let fault: Fault;
  before(async () => {
    // No kills here: the default job lock, so no job is ever taken over and nothing arrives twice.
    fault = await setUpFault('two-and-two', { destinations: [{ id: 'hook-a' }, { id: 'hook-b' }], processEnv: { FLAGSTREAM_JOB_LOCK_MS: '30000' } });
  });
  after(() => fault.teardown());

  test('everything is delivered exactly once per destination and the ledger is exact', { timeout: 150_000 }, async () => {
    await Promise.all([fault.start('api-1', 'api'), fault.start('api-2', 'api'), fault.start('worker-1', 'worker'), fault.start('worker-2', 'worker')]);
    assert.equal(fault.apiUrls().length, 2);
    // BullMQ names each worker's blocking connection after its queue: both workers serve both queues
    // (polled: a worker opens that connection a moment after it says it started).
    const workersOf = async (queue: string) => {
      const name = `${redisPrefix}:q:${Buffer.from(queue).toString('base64')}`;
      return String(await fault.redis.client.client('LIST')).split('\n').filter((line) => line.includes(` name=${name} `)).length;
    };
    await pollUntil(async () => (await workersOf('ingest')) === 2 && (await workersOf('delivery')) === 2, { timeoutMs: 10_000, what: 'two ingest and two delivery workers connected' });
    const load = fault.load('sdk');
    load.start({ accepted: 200, concurrency: 4, pauseMs: 5 });
    await load.finished();
    const { ledger } = await fault.settle({ maxArrivals: 1 });

    // `flagstream ledger --json` tells the same as the admin API at a quiet moment.
    const cli = await runFlagstreamCli(['ledger', '--json'], fault.env);
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual(JSON.parse(cli.stdout), ledger);
    const [url] = fault.apiUrls();
    assert.deepEqual(await fetchLedger(url ?? '', adminToken), ledger, 'both APIs answer the same ledger');
  });
});
