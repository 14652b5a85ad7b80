import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { withTimeout } from '../helpers/processes.js';
import { RedisProxy } from '../helpers/redis-proxy.js';
import { type Fault, setUpFault } from './harness.js';

/**
 * DEFECT REPRODUCTION (found by the Redis-restart scenario, where it shows now and then): when
 * the connection drops after Redis ran a transaction but before its reply arrived (a restart, a
 * failover, a network cut), ioredis re-sends the unanswered commands on reconnect
 * (`autoResendUnfulfilledCommands`, on by default), so the transaction runs twice. These tests
 * lose exactly one reply, deterministically, through a proxy in front of Redis: a request must
 * still be counted once, routed once and settled once.
 */
const transactions = [
  { id: 'ingest', what: 'an ingest transaction (API)', proxied: 'api', marker: /\$8\r\nreceived\r\n/ },
  { id: 'routing', what: 'a routing transaction (worker)', proxied: 'worker', marker: /\$6\r\nrouted\r\n/ },
  { id: 'settlement', what: 'a delivery settlement (worker)', proxied: 'worker', marker: /\$9\r\ndelivered\r\n/ },
] as const;

for (const { id, what, proxied, marker } of transactions) {
  describe(`a Redis reply lost after ${what} ran`, () => {
    let fault: Fault;
    let proxy: RedisProxy;
    before(async () => {
      fault = await setUpFault(`reply-lost-${id}`, { destinations: [{ id: 'hook' }] });
      proxy = await RedisProxy.start(fault.redis.port, fault.redis.client);
    });
    after(async () => {
      await fault.teardown();
      await proxy.close();
    });

    test('the ledger still counts every impression once', { timeout: 90_000 }, async () => {
      const through = { env: { REDIS_URL: proxy.url } };
      await fault.start('worker', 'worker', proxied === 'worker' ? through : {});
      await fault.start('api', 'api', proxied === 'api' ? through : {});
      const load = fault.load('one');
      const cut = proxy.loseNextTransactionReply(marker);
      await load.sendOne();
      await withTimeout(cut, 20_000, `${what} to run with its reply lost`);
      assert.equal(load.accepted.length, 1, `the request is answered once its transaction is known to have run (${load.statusSummary()})`);
      await fault.settle({ maxArrivals: 2, timeoutMs: 20_000 });
    });
  });
}
