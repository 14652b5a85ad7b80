import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LedgerReport } from '../../src/admin/ledger-service.js';
import { runFlagstream } from '../helpers/cli.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { readLedger, waitForQuietLedger } from '../helpers/ledger.js';
import { adminToken, postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

/**
 * The ledger accounts for every accepted impression, per environment and destination, with
 * counts written together with the work they count and `pending` measured from the queues.
 */
describe('the ledger', () => {
  let app: TestApp;
  let good: HttpReceiver;
  let flaky: HttpReceiver;

  before(async () => {
    good = await HttpReceiver.start();
    flaky = await HttpReceiver.start();
    app = await startTestApp();
    await app.apply({
      environments: [
        {
          id: 'env-l',
          sdkKeys: ['sdk-l'],
          flags: [
            { name: 'tracked', trafficType: 'user', trackImpressions: true },
            { name: 'quiet', trafficType: 'user', trackImpressions: false },
          ],
          destinations: [
            { id: 'hook-good', type: 'webhook', settings: { url: `${good.url}/g`, maxBatchWait: 0 } },
            { id: 'hook-flaky', type: 'webhook', settings: { url: `${flaky.url}/f`, maxBatchWait: 0 } },
          ],
        },
      ],
    });
  });
  after(async () => {
    await app.close();
    await good.close();
    await flaky.close();
  });

  const post = (split: string, count: number, offset: number) =>
    postJson(`${app.url}/v1/impressions`, { impressions: Array.from({ length: count }, (_, i) => ({ key: `u${offset + i}`, split, treatment: 'on', time: 1_718_900_000_000 + offset + i })) }, { authorization: 'Bearer sdk-l' });

  const destination = (report: LedgerReport, id: string) => report.environments[0]?.destinations.find((d) => d.destinationId === id);

  test('balances drops, deliveries, dead letters and a replay with exact counts', async () => {
    flaky.respond = () => ({ status: 400, body: '{"error":"bad"}' });
    assert.equal((await post('tracked', 5, 0)).status, 202);
    assert.equal((await post('quiet', 2, 100)).status, 202);
    let report = await waitForQuietLedger(app);
    const environment = report.environments[0];
    assert.deepEqual(
      { received: environment?.received, dropped: environment?.dropped, routed: environment?.routed, difference: environment?.difference },
      { received: 7, dropped: { tracking_off: 2 }, routed: 5, difference: 0 },
    );
    assert.deepEqual(destination(report, 'hook-good'), { destinationId: 'hook-good', routed: 5, replayed: 0, delivered: 5, skipped: 0, deadLettered: 0, pending: 0, difference: 0 });
    assert.deepEqual(destination(report, 'hook-flaky'), { destinationId: 'hook-flaky', routed: 5, replayed: 0, delivered: 0, skipped: 0, deadLettered: 5, pending: 0, difference: 0 });

    flaky.respond = () => ({ status: 200 });
    const replay = await app.admin('POST', '/dead-letters/replay', { destination: 'hook-flaky' });
    assert.equal(replay.status, 200, JSON.stringify(replay.body));
    // Replaying again changes nothing: the dead letter is marked, and counted, once.
    await app.admin('POST', '/dead-letters/replay', { destination: 'hook-flaky' });
    report = await waitForQuietLedger(app);
    assert.deepEqual(destination(report, 'hook-flaky'), { destinationId: 'hook-flaky', routed: 5, replayed: 5, delivered: 5, skipped: 0, deadLettered: 5, pending: 0, difference: 0 });
    assert.equal(report.balanced, true);
  });

  test('measures what is pending instead of counting it, so waiting work keeps it balanced', async () => {
    assert.equal((await app.admin('POST', '/destinations/hook-good/pause', { reason: 'ledger test' })).status, 200);
    assert.equal((await post('tracked', 3, 200)).status, 202);
    await app.waitForState(async () => destination(await readLedger(app), 'hook-good')?.pending === 3, 15_000, 'three impressions waiting for hook-good');
    const waiting = await readLedger(app);
    assert.equal(destination(waiting, 'hook-good')?.difference, 0);
    assert.equal(destination(waiting, 'hook-good')?.delivered, 5);

    await app.admin('POST', '/destinations/hook-good/resume', {});
    const report = await waitForQuietLedger(app);
    assert.deepEqual([destination(report, 'hook-good')?.routed, destination(report, 'hook-good')?.delivered], [8, 8]);
  });

  test('shows a difference when impressions vanish from the queues (a deleted job)', async () => {
    await app.admin('POST', '/destinations/hook-good/pause', { reason: 'ledger test' });
    await post('tracked', 2, 300);
    await app.waitForState(async () => destination(await readLedger(app), 'hook-good')?.pending === 2, 15_000, 'two impressions waiting');
    // What a lost job looks like: gone from the queue without being delivered or dead-lettered.
    const [job] = await app.ctx.queues.delivery.getDelayed();
    await job?.remove();
    const report = await readLedger(app);
    assert.equal(destination(report, 'hook-good')?.difference, 2);
    assert.equal(report.balanced, false);
    await app.admin('POST', '/destinations/hook-good/resume', {});
  });

  test('is served by GET /admin/v1/ledger and `flagstream ledger --json`, the same report', async () => {
    const api = await app.admin('GET', '/ledger');
    assert.equal(api.status, 200);
    const cli = await runFlagstream(['ledger', '--json'], { REDIS_URL: app.ctx.env.REDIS_URL ?? '', FLAGSTREAM_REDIS_PREFIX: app.ctx.env.FLAGSTREAM_REDIS_PREFIX, ADMIN_TOKEN: adminToken });
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual(JSON.parse(cli.stdout), api.body);
    const table = await runFlagstream(['ledger'], { REDIS_URL: app.ctx.env.REDIS_URL ?? '', FLAGSTREAM_REDIS_PREFIX: app.ctx.env.FLAGSTREAM_REDIS_PREFIX });
    assert.match(table.stdout, /hook-good/);
    assert.match(table.stdout, /NOT balanced/, 'the job deleted above still shows');
  });
});
