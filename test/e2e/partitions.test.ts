import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { LedgerReport } from '../../src/admin/ledger-service.js';
import type { DeadLetter, DeadLetterSummary } from '../../src/domain/dead-letter.js';
import { createAppContext } from '../../src/runtime/app-context.js';
import { readEnv } from '../../src/app-config.js';
import { pino } from 'pino';
import { runFlagstream } from '../helpers/cli.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { describeLedger } from '../helpers/ledger.js';
import { environmentPerPartition } from '../helpers/partitions.js';
import { createTestRedis, deleteKeys, scanKeys, testRedisUrl, uniquePrefix } from '../helpers/redis.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

const partitions = 3;
const requestsPerEnvironment = 4;
const impressionsPerRequest = 5;
const perEnvironment = requestsPerEnvironment * impressionsPerRequest;

describe('FLAGSTREAM_REDIS_PARTITIONS=3 on a single Redis: the pipeline per partition, admin reads over all', () => {
  const environments = environmentPerPartition('env-part', partitions);
  let app: TestApp;
  let receiver: HttpReceiver;
  let redis: Redis;
  let prefix: string;
  /** Paths of failing destinations that accept now, and since when. */
  const accepting = new Map<string, number>();

  before(async () => {
    receiver = await HttpReceiver.start();
    receiver.respond = (request) => (request.url.startsWith('/bad/') && !accepting.has(request.url) ? { status: 400, body: 'refused' } : { status: 200, body: 'ok' });
    app = await startTestApp({ env: { FLAGSTREAM_REDIS_PARTITIONS: String(partitions) } });
    prefix = app.ctx.env.FLAGSTREAM_REDIS_PREFIX;
    redis = createTestRedis();
    await app.apply({
      environments: environments.map((id, partition) => ({
        id,
        sdkKeys: [`sdk-${partition}`],
        flags: [{ name: 'flag_p', trafficType: 'user', trackImpressions: true }],
        destinations: [
          { id: `ok-${partition}`, type: 'webhook', settings: { url: `${receiver.url}/ok/${partition}` } },
          // Partitions 1 and 2 have a destination that refuses (400: dead-lettered at once).
          ...(partition === 0 ? [] : [{ id: `bad-${partition}`, type: 'webhook', settings: { url: `${receiver.url}/bad/${partition}` } }]),
        ],
      })),
    });
  });
  after(async () => {
    await app.close();
    redis.disconnect();
    await receiver.close();
  });

  const ledger = async () => (await app.admin('GET', '/ledger')).body as LedgerReport;
  const destination = (report: LedgerReport, id: string) => report.environments.flatMap((e) => e.destinations).find((d) => d.destinationId === id);
  const quietLedger = async (what: string, done: (report: LedgerReport) => boolean) => {
    let last: LedgerReport | undefined;
    await app.waitForState(
      async () => {
        last = await ledger();
        return last.balanced && last.environments.every((e) => e.pending === 0 && e.destinations.every((d) => d.pending === 0)) && done(last);
      },
      30_000,
      `${what}: ${environments.map((id) => describeLedger(last, id)).join(' | ')}`,
    );
    return last as LedgerReport;
  };
  const arrived = (path: string) => receiver.requests.filter((r) => r.url === path && (!path.startsWith('/bad/') || r.at >= (accepting.get(path) ?? Number.POSITIVE_INFINITY))).flatMap((r) => JSON.parse(r.body) as { id: string; key: string; environmentId: string }[]);
  const keysOf = (partition: number) => new Set(Array.from({ length: perEnvironment }, (_, n) => `p${partition}-k${n}`));

  test('each environment is routed and delivered in its partition, once per impression; the ledger report sums the partitions', async () => {
    for (const [partition] of environments.entries()) {
      for (let r = 0; r < requestsPerEnvironment; r += 1) {
        const impressions = Array.from({ length: impressionsPerRequest }, (_, i) => ({ key: `p${partition}-k${r * impressionsPerRequest + i}`, split: 'flag_p', treatment: 'on', time: 1_764_000_000_000 + i }));
        const response = await postJson(`${app.url}/v1/impressions`, { impressions }, { authorization: `Bearer sdk-${partition}` });
        assert.equal(response.status, 202, JSON.stringify(response.body));
      }
    }
    const report = await quietLedger('every impression delivered or dead-lettered', (r) => environments.every((_, p) => destination(r, `ok-${p}`)?.delivered === perEnvironment));
    for (const [partition, environmentId] of environments.entries()) {
      const ok = arrived(`/ok/${partition}`);
      assert.equal(new Set(ok.map((i) => i.id)).size, ok.length, 'no impression delivered twice');
      assert.deepEqual(new Set(ok.map((i) => i.key)), keysOf(partition));
      assert.ok(ok.every((i) => i.environmentId === environmentId));
      const environment = report.environments.find((e) => e.environmentId === environmentId);
      assert.equal(environment?.received, perEnvironment, describeLedger(report, environmentId));
      if (partition > 0) assert.equal(destination(report, `bad-${partition}`)?.deadLettered, perEnvironment);
      // Its counts live in its partition only.
      const ledgerKey = (k: number) => `{${prefix}:p${k}}:ledger:environment:${environmentId}`;
      assert.deepEqual(await Promise.all([0, 1, 2].map(async (k) => redis.exists(ledgerKey(k)))), [0, 1, 2].map((k) => (k === partition ? 1 : 0)));
    }
    assert.deepEqual(report.environments.map((e) => e.environmentId), [...environments].sort());
    assert.equal(report.balanced, true);
    // No data-plane key under the deployment's own prefix: only the control plane is there.
    const unpartitioned: string[] = [];
    await scanKeys(redis, `${prefix}:*`, async (_node, keys) => unpartitioned.push(...keys));
    assert.deepEqual(unpartitioned.filter((key) => !/:(config|workers|tail)[:]?/.test(key)), []);
    // The environment filter reads across partitions too.
    assert.deepEqual(((await app.admin('GET', `/ledger?environment=${environments[2]}`)).body as LedgerReport).environments.map((e) => e.environmentId), [environments[2]]);
  });

  test('dead letters of two partitions list together newest first, page, show by id and replay and purge in their own partition', async () => {
    const perPartition = await Promise.all(app.ctx.partitions.map((stores) => stores.deadLetters.listIds({})));
    assert.equal(perPartition[0]?.length, 0);
    assert.ok((perPartition[1]?.length ?? 0) > 0 && (perPartition[2]?.length ?? 0) > 0, `dead letters per partition: ${perPartition.map((ids) => ids.length).join(', ')}`);
    const all = ((await app.admin('GET', '/dead-letters?limit=1000')).body as { deadLetters: DeadLetterSummary[] }).deadLetters;
    assert.equal(all.length, perPartition.flat().length);
    assert.deepEqual(new Set(all.map((d) => d.id)), new Set(perPartition.flat()));
    assert.deepEqual(new Set(all.map((d) => d.environmentId)), new Set([environments[1], environments[2]]));
    assert.deepEqual(all.map((d) => d.createdAt), all.map((d) => d.createdAt).sort((a, b) => b - a), 'newest first');
    const firstTwo = ((await app.admin('GET', '/dead-letters?limit=2')).body as { deadLetters: DeadLetterSummary[] }).deadLetters;
    assert.deepEqual(firstTwo.map((d) => d.id), all.slice(0, 2).map((d) => d.id));
    const ofBad2 = ((await app.admin('GET', '/dead-letters?destination=bad-2')).body as { deadLetters: DeadLetterSummary[] }).deadLetters;
    assert.deepEqual(new Set(ofBad2.map((d) => d.id)), new Set(perPartition[2]));
    const shown = await app.admin('GET', `/dead-letters/${perPartition[2]?.[0] ?? ''}`);
    assert.equal(shown.status, 200);
    assert.equal((shown.body as DeadLetter).environmentId, environments[2]);
    assert.equal((await app.admin('GET', '/dead-letters/dl_none')).status, 404);

    // bad-1 by ids, bad-2 by destination: each replay goes to its partition's queues.
    accepting.set('/bad/1', Date.now());
    accepting.set('/bad/2', Date.now());
    const byIds = await app.admin('POST', '/dead-letters/replay', { ids: perPartition[1] });
    assert.equal(byIds.status, 200, JSON.stringify(byIds.body));
    assert.equal((byIds.body as { impressions: number }).impressions, perEnvironment);
    const byDestination = await app.admin('POST', '/dead-letters/replay', { destination: 'bad-2' });
    assert.equal((byDestination.body as { impressions: number }).impressions, perEnvironment);
    const report = await quietLedger('replays delivered', (r) => destination(r, 'bad-1')?.delivered === perEnvironment && destination(r, 'bad-2')?.delivered === perEnvironment);
    for (const partition of [1, 2]) {
      assert.equal(destination(report, `bad-${partition}`)?.replayed, perEnvironment);
      const replayed = arrived(`/bad/${partition}`);
      assert.equal(new Set(replayed.map((i) => i.id)).size, replayed.length, 'no replayed impression delivered twice');
      assert.deepEqual(new Set(replayed.map((i) => i.key)), keysOf(partition));
    }

    const purged = await app.admin('POST', '/dead-letters/purge', { all: true });
    assert.deepEqual(purged.body, { dryRun: false, purged: all.length });
    assert.deepEqual(await Promise.all(app.ctx.partitions.map(async (stores) => (await stores.deadLetters.listIds({})).length)), [0, 0, 0]);
  });

  test("destination health, pause and resume act in the destination's environment's partition; stats read the environment's", async () => {
    const listed = (await app.admin('GET', '/health/destinations')).body as { destinations: { destinationId: string; state: string }[] };
    assert.deepEqual(listed.destinations.map((d) => d.destinationId), ['bad-1', 'bad-2', 'ok-0', 'ok-1', 'ok-2']);
    const paused = await app.admin('POST', '/destinations/ok-2/pause', { reason: 'partition test' });
    assert.equal((paused.body as { state: string }).state, 'paused');
    assert.equal(await redis.hget(`{${prefix}:p2}:health:ok-2`, 'state'), 'paused');
    assert.equal(await redis.exists(`{${prefix}:p0}:health:ok-2`), 0);
    assert.equal(((await app.admin('GET', '/destinations/ok-2/health')).body as { state: string }).state, 'paused');
    assert.equal(((await app.admin('POST', '/destinations/ok-2/resume')).body as { state: string }).state, 'healthy');
    const stats = (await app.admin('GET', `/environments/${environments[1]}/stats`)).body as { flags: { flag: string; impressions: number }[] };
    assert.deepEqual(stats.flags.map((f) => [f.flag, f.impressions]), [['flag_p', perEnvironment]]);
    // Monitoring reads the environment's partition: this month's tracked keys of each environment.
    for (const environmentId of environments) {
      const mtks = (await app.admin('GET', `/environments/${environmentId}/mtks?months=1`)).body as { months: { keys: number }[] };
      assert.deepEqual(mtks.months.map((m) => m.keys), [perEnvironment], environmentId);
    }
  });
});

describe('FLAGSTREAM_REDIS_PARTITIONS=3: the ingest backlog limit and /metrics count every partition', () => {
  test('one waiting request in each partition is a backlog of 3, refused at a limit of 3; /metrics says 3', async () => {
    let now = Date.now();
    const environments = environmentPerPartition('env-backlog', partitions);
    const app = await startTestApp({ workers: false, clock: () => now, env: { FLAGSTREAM_REDIS_PARTITIONS: String(partitions), FLAGSTREAM_INGEST_BACKLOG_LIMIT: '3' } });
    try {
      await app.apply({ environments: environments.map((id, partition) => ({ id, sdkKeys: [`sdk-${partition}`] })) });
      const post = (partition: number) => postJson(`${app.url}/v1/impressions`, { impressions: [{ key: `user-${partition}`, split: 'f', treatment: 'on', time: now }] }, { authorization: `Bearer sdk-${partition}` });
      for (const partition of [0, 1, 2]) {
        assert.equal((await post(partition)).status, 202);
        // Past the half second the backlog count is cached for.
        now += 501;
      }
      assert.deepEqual(await Promise.all(app.ctx.partitions.map((stores) => stores.queues.ingest.getWaitingCount())), [1, 1, 1]);
      const refused = await post(0);
      assert.equal(refused.status, 503, JSON.stringify(refused.body));
      const metrics = await (await fetch(`${app.url}/metrics`)).text();
      assert.match(metrics, /^flagstream_queue_jobs\{queue="ingest",state="waiting"\} 3$/m);
    } finally {
      await app.close();
    }
  });
});

describe('FLAGSTREAM_REDIS_PARTITIONS is fixed for a deployment\'s life', () => {
  const logger = pino({ level: 'silent' });
  let redis: Redis;
  before(() => {
    redis = createTestRedis();
  });
  after(() => {
    redis.disconnect();
  });

  const open = (prefix: string, partitionCount: number) => {
    const env = readEnv({ REDIS_URL: testRedisUrl, FLAGSTREAM_REDIS_PREFIX: prefix, FLAGSTREAM_REDIS_PARTITIONS: String(partitionCount), FLAGSTREAM_LOG_LEVEL: 'silent' });
    return createAppContext({ env, logger, redis });
  };

  test('the first start records the count; a start with another one is refused, by the server and by the CLI', async () => {
    const prefix = uniquePrefix('partitions');
    try {
      const first = await open(prefix, 3);
      await first.close();
      assert.equal(await redis.get(`${prefix}:config:partitions`), '3');
      const again = await open(prefix, 3);
      await again.close();
      await assert.rejects(open(prefix, 2), /FLAGSTREAM_REDIS_PARTITIONS is 2, but the deployment ".*" was started with 3 .*needs a migration that does not exist/);
      await assert.rejects(open(prefix, 1), /FLAGSTREAM_REDIS_PARTITIONS is 1/);
      const cli = await runFlagstream(['ledger', '--json'], { REDIS_URL: testRedisUrl, FLAGSTREAM_REDIS_PREFIX: prefix, FLAGSTREAM_REDIS_PARTITIONS: '2' });
      assert.notEqual(cli.code, 0);
      assert.match(cli.stderr, /FLAGSTREAM_REDIS_PARTITIONS is 2/);
      const agreeing = await runFlagstream(['ledger', '--json'], { REDIS_URL: testRedisUrl, FLAGSTREAM_REDIS_PREFIX: prefix, FLAGSTREAM_REDIS_PARTITIONS: '3' });
      assert.equal(agreeing.code, 0, agreeing.stderr);
      assert.equal(await redis.get(`${prefix}:config:partitions`), '3');
    } finally {
      await deleteKeys(redis, prefix);
    }
  });

  test('a deployment from before the setting (unpartitioned data, no count recorded) may start with 1 only', async () => {
    const prefix = uniquePrefix('partitions');
    try {
      await redis.sadd(`${prefix}:ledger:environments`, 'env-old');
      await assert.rejects(open(prefix, 4), /FLAGSTREAM_REDIS_PARTITIONS is 4, but the deployment ".*" was started with 1 \(its data predates the setting/);
      assert.equal(await redis.get(`${prefix}:config:partitions`), null);
      const ctx = await open(prefix, 1);
      await ctx.close();
      assert.equal(await redis.get(`${prefix}:config:partitions`), '1');
    } finally {
      await deleteKeys(redis, prefix);
    }
  });
});
