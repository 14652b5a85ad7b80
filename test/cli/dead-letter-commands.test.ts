import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createConfigService } from '../../src/admin/config-service.js';
import { createDestinationGuard } from '../../src/delivery/destination-guard.js';
import { ConnectorRegistry } from '../../src/connectors/registry.js';
import { createConfigStore } from '../../src/stores/config-store.js';
import { createDeadLetterStore } from '../../src/stores/dead-letter-store.js';
import { redisKeys } from '../../src/stores/redis-keys.js';
import { createSecretBox } from '../../src/stores/secret-box.js';
import { runFlagstream } from '../helpers/cli.js';
import { makeImpression } from '../helpers/impressions.js';
import { createTestRedis, deleteKeys, testRedisUrl, uniquePrefix } from '../helpers/redis.js';

describe('flagstream dlq and destinations commands', () => {
  const prefix = uniquePrefix('dlqcli');
  const redis = createTestRedis();
  const keys = redisKeys(prefix);
  const env = { REDIS_URL: testRedisUrl, FLAGSTREAM_REDIS_PREFIX: prefix };
  const store = createDeadLetterStore({ redis, keys, retentionMs: 86_400_000 });
  let firstId = '';

  before(async () => {
    const registry = new ConnectorRegistry();
    await createConfigService({ store: createConfigStore({ redis, keys, registry, secrets: createSecretBox(undefined) }), registry, destinationGuard: createDestinationGuard([]) }).apply({
      environments: [{ id: 'env-d', destinations: [{ id: 'hook-d', type: 'webhook', settings: { url: 'https://hooks.example.com/d' } }] }],
    });
    const base = { destinationId: 'hook-d', environmentId: 'env-d', connectorType: 'webhook', attempts: 8, firstAttemptAt: 1_700_000_000_000, lastAttemptAt: 1_700_000_100_000 };
    firstId = (await store.record({ ...base, key: 'one', reason: 'retries_exhausted', error: { status: 503, message: 'HTTP 503: maintenance' }, impressions: [makeImpression(), makeImpression()] })).id;
    await store.record({ ...base, key: 'two', reason: 'invalid_payload', error: { status: 400, message: 'HTTP 400: bad field' }, impressions: [makeImpression()] });
  });
  after(async () => {
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  test('list shows a table, --json the records; show prints one with its impressions', async () => {
    const table = await runFlagstream(['dlq', 'list'], env);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^ID\s+DESTINATION\s+REASON\s+IMPRESSIONS/m);
    assert.match(table.stdout, /hook-d\s+retries_exhausted\s+2\s+8/);
    const json = await runFlagstream(['dlq', 'list', '--destination', 'hook-d', '--status', 'pending', '--json'], env);
    const letters = (JSON.parse(json.stdout) as { deadLetters: { id: string; impressionCount: number }[] }).deadLetters;
    assert.equal(letters.length, 2);
    const show = await runFlagstream(['dlq', 'show', firstId], env);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /reason:\s+retries_exhausted/);
    assert.match(show.stdout, /error:\s+HTTP 503: maintenance/);
    assert.equal(show.stdout.split('\n').filter((line) => line.startsWith('  {')).length, 2);
  });

  test('bad arguments get a clear message and a non-zero exit', async () => {
    const none = await runFlagstream(['dlq', 'replay'], env);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /name the dead letters: IDs, or --destination D \[--since T\], or --all/);
    const since = await runFlagstream(['dlq', 'list', '--since', 'last tuesday'], env);
    assert.equal(since.code, 1);
    assert.match(since.stderr, /since: expected an ISO date/);
    const missing = await runFlagstream(['dlq', 'show', 'dl_nope'], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no dead letter "dl_nope"/);
  });

  test('replay re-queues (dry run first), reports counts, and is safe to run twice', async () => {
    const dry = await runFlagstream(['dlq', 'replay', '--destination', 'hook-d', '--dry-run'], env);
    assert.match(dry.stdout, /would re-queue 3 impression\(s\) from 2 dead letter\(s\)/);
    const one = await runFlagstream(['dlq', 'replay', firstId], env);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, /re-queued 2 impression\(s\) from 1 dead letter\(s\)/);
    const rest = await runFlagstream(['dlq', 'replay', '--all', '--json'], env);
    assert.deepEqual(JSON.parse(rest.stdout), { dryRun: false, deadLetters: 1, impressions: 1, skipped: [] });
    const again = await runFlagstream(['dlq', 'replay', '--all'], env);
    assert.match(again.stdout, /re-queued 0 impression\(s\) from 0 dead letter\(s\)/);
    const jobs = await redis.zcard(`${keys.bullPrefix}:delivery:prioritized`);
    assert.equal(jobs, 2, 'two replay jobs queued behind live traffic');
  });

  test('destinations status, pause and resume', async () => {
    const paused = await runFlagstream(['destinations', 'pause', 'hook-d', '--reason', 'vendor outage'], env);
    assert.equal(paused.code, 0, paused.stderr);
    const status = await runFlagstream(['destinations', 'status'], env);
    assert.match(status.stdout, /hook-d\s+env-d\s+webhook\s+true\s+paused/);
    assert.match(status.stdout, /paused by an operator: vendor outage/);
    const resumed = await runFlagstream(['destinations', 'resume', 'hook-d', '--json'], env);
    assert.equal((JSON.parse(resumed.stdout) as { state: string }).state, 'healthy');
    const unknown = await runFlagstream(['destinations', 'pause', 'nope'], env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no destination "nope"/);
  });

  test('purge deletes what it selects', async () => {
    const purged = await runFlagstream(['dlq', 'purge', '--all', '--status', 'replayed', '--yes'], env);
    assert.match(purged.stdout, /purged 2 dead letter\(s\)/);
    const list = await runFlagstream(['dlq', 'list'], env);
    assert.match(list.stdout, /no dead letters/);
  });
});
