import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { masterNodes } from '../../src/runtime/redis-client.js';
import type { DeadLetterSummary } from '../../src/domain/dead-letter.js';
import { deploymentPrefix } from '../../src/stores/redis-keys.js';
import { runFlagstream } from '../helpers/cli.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { ImpressionLoad } from '../helpers/impression-load.js';
import { describeLedger, fetchLedger } from '../helpers/ledger.js';
import { clusterUnsupported, LocalRedisCluster } from '../helpers/redis-cluster.js';
import { createTestRedis, deleteKeys, scanKeys, uniquePrefix } from '../helpers/redis.js';
import { environmentPerPartition } from '../helpers/partitions.js';
import { ServeProcess } from '../helpers/serve-process.js';

const unsupported = clusterUnsupported();
const token = 'cluster-admin';
const requests = 20;
const trackedPerRequest = 25;
const droppedPerRequest = 5;

/** Keys matching `pattern` on each master (of the deployment's own prefix by default). */
async function keysPerNode(redis: Redis, prefix: string, pattern = `${deploymentPrefix(prefix, true)}:*`): Promise<number[]> {
  const counts = new Map(masterNodes(redis).map((node) => [node, 0]));
  await scanKeys(redis, pattern, async (node, keys) => counts.set(node, (counts.get(node) ?? 0) + keys.length));
  return [...counts.values()];
}

/** Applies a configuration through the admin API, then waits until the API answers from it (it serves a cached one). */
async function applyAndWaitForReload(serve: ServeProcess, configuration: unknown): Promise<void> {
  const reloads = () => serve.lines.filter((line) => line.msg === 'configuration reloaded').length;
  const reloadsBefore = reloads();
  const applied = await fetch(`${serve.url}/admin/v1/config/apply`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(configuration),
  });
  assert.equal(applied.status, 200, await applied.text());
  await serve.waitFor(() => reloads() > reloadsBefore, 15_000, 'the configuration to be reloaded');
}

/** Stops what a suite started and deletes its keys. */
async function stopAll(serve: ServeProcess | undefined, redis: Redis | undefined, prefix: string, receiver: HttpReceiver | undefined, cluster: LocalRedisCluster | undefined): Promise<void> {
  await serve?.kill();
  if (redis !== undefined) {
    await deleteKeys(redis, prefix);
    redis.disconnect();
  }
  await receiver?.close();
  await cluster?.stop();
}

describe('flagstream serve on a three-node Redis Cluster (REDIS_URL=redis+cluster://…)', { skip: unsupported === undefined ? false : `no local Redis Cluster: ${unsupported}` }, () => {
  const prefix = uniquePrefix('cluster');
  let cluster: LocalRedisCluster;
  let receiver: HttpReceiver;
  let serve: ServeProcess | undefined;
  let redis: Redis | undefined;
  let env: Record<string, string>;
  /** When the failing destination started accepting (for the replay), else undefined. */
  let badAcceptsSince: number | undefined;

  before(async () => {
    cluster = await LocalRedisCluster.start();
    receiver = await HttpReceiver.start();
    // The failing destination refuses for good (a 400 is not retried): its impressions are dead-lettered at once.
    receiver.respond = (request) => (request.url === '/bad' && badAcceptsSince === undefined ? { status: 400, body: 'refused' } : { status: 200, body: 'ok' });
    env = {
      REDIS_URL: cluster.url,
      FLAGSTREAM_REDIS_PREFIX: prefix,
      ADMIN_TOKEN: token,
      FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1',
      FLAGSTREAM_BATCH_WAIT_CAP_MS: '50',
      FLAGSTREAM_AUTH_FAILURE_LIMIT: '0',
    };
    serve = await ServeProcess.start(env);
    redis = createTestRedis(cluster.url);
  });
  after(() => stopAll(serve, redis, prefix, receiver, cluster));

  test('every impression arrives once, the failing destination dead-letters, a replay delivers, the ledger balances; all keys on one node', async () => {
    assert.ok(serve !== undefined && redis !== undefined);
    await serve.waitUntilReady(30_000);
    await applyAndWaitForReload(serve, {
      environments: [
        {
          id: 'env-cluster',
          sdkKeys: ['sdk-cluster'],
          flags: [
            { name: 'flag_tracked', trafficType: 'user', trackImpressions: true },
            { name: 'flag_quiet', trafficType: 'user', trackImpressions: false },
          ],
          destinations: [
            { id: 'hook-ok', type: 'webhook', settings: { url: `${receiver.url}/ok`, batchSize: 100 } },
            { id: 'hook-bad', type: 'webhook', settings: { url: `${receiver.url}/bad`, batchSize: 100 } },
          ],
        },
      ],
    });

    const load = new ImpressionLoad({ targets: () => [serve?.url ?? ''], sdkKey: 'sdk-cluster', tag: 'cl', trackedFlag: 'flag_tracked', droppedFlag: 'flag_quiet', tracked: trackedPerRequest, dropped: droppedPerRequest });
    load.start({ accepted: requests, concurrency: 4, pauseMs: 0 });
    await load.finished(60_000);
    // Concurrent senders may send a few more than asked: all of them must be accepted.
    assert.equal(load.accepted.length, load.sent.length, `statuses: ${load.statusSummary()}`);
    const expected = new Set(load.accepted.flatMap((r) => r.trackedKeys));
    assert.equal(expected.size, load.accepted.length * trackedPerRequest);

    /** Impressions the receiver answered 2xx at `path`. */
    const arrived = (path: string) =>
      receiver.requests.filter((r) => r.url === path && (path !== '/bad' || (badAcceptsSince !== undefined && r.at >= badAcceptsSince))).flatMap((r) => JSON.parse(r.body) as { id: string; key: string }[]);
    await receiver.waitFor(() => new Set(arrived('/ok').map((i) => i.key)).size >= expected.size, 60_000, 'every impression at hook-ok');
    const ok = arrived('/ok');
    assert.equal(new Set(ok.map((i) => i.id)).size, ok.length, 'no impression delivered twice');
    assert.deepEqual(new Set(ok.map((i) => i.key)), expected);

    const quiet = async (what: string, done: (ledger: Awaited<ReturnType<typeof fetchLedger>>) => boolean) => {
      let last: Awaited<ReturnType<typeof fetchLedger>> | undefined;
      const deadline = Date.now() + 60_000;
      for (;;) {
        last = await fetchLedger(serve?.url ?? '', token);
        if (last.balanced && done(last)) return last;
        if (Date.now() > deadline) throw new Error(`${what}: ${describeLedger(last, 'env-cluster')}`);
        // Polling the ledger endpoint: nothing announces that the queues are drained.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    const destination = (ledger: Awaited<ReturnType<typeof fetchLedger>>, id: string) => ledger.environments.find((e) => e.environmentId === 'env-cluster')?.destinations.find((d) => d.destinationId === id);
    const settled = await quiet('hook-bad dead-lettered, ledger balanced', (ledger) => destination(ledger, 'hook-bad')?.deadLettered === expected.size && destination(ledger, 'hook-ok')?.delivered === expected.size);
    const environment = settled.environments.find((e) => e.environmentId === 'env-cluster');
    assert.equal(environment?.received, load.accepted.length * (trackedPerRequest + droppedPerRequest), describeLedger(settled, 'env-cluster'));
    assert.equal(environment?.pending, 0);

    // Replay with the CLI, connected to the cluster as a user would (REDIS_URL=redis+cluster://…).
    badAcceptsSince = Date.now();
    const replay = await runFlagstream(['dlq', 'replay', '--destination', 'hook-bad', '--json'], env);
    assert.equal(replay.code, 0, replay.stderr);
    assert.equal((JSON.parse(replay.stdout) as { impressions: number }).impressions, expected.size);
    await receiver.waitFor(() => new Set(arrived('/bad').map((i) => i.key)).size >= expected.size, 60_000, 'every replayed impression at hook-bad');
    const replayed = arrived('/bad');
    assert.equal(new Set(replayed.map((i) => i.id)).size, replayed.length, 'no replayed impression delivered twice');
    assert.deepEqual(new Set(replayed.map((i) => i.key)), expected);
    assert.deepEqual(new Set(replayed.map((i) => i.id)), new Set(ok.map((i) => i.id)), 'a replay keeps the impression ids');
    const final = await quiet('replay settled, ledger balanced', (ledger) => destination(ledger, 'hook-bad')?.delivered === expected.size);
    assert.equal(destination(final, 'hook-bad')?.replayed, expected.size, describeLedger(final, 'env-cluster'));

    // One hash tag: every key of the deployment lives on one node of the three.
    const perNode = await keysPerNode(redis, prefix);
    assert.equal(perNode.filter((count) => count > 0).length, 1, `keys per node: ${perNode.join(', ')}`);

    const errors = serve.lines.filter((line) => line.level >= 50);
    assert.deepEqual(errors, [], 'nothing logged at error level');
    const exit = serve.signal('SIGTERM');
    assert.equal((await serve.exitWithin(20_000)).code, 0, `exit after SIGTERM at ${exit}: ${serve.stderr}`);
  });
});

describe('FLAGSTREAM_REDIS_PARTITIONS=3 on a three-node Redis Cluster: one deployment over several masters', { skip: unsupported === undefined ? false : `no local Redis Cluster: ${unsupported}` }, () => {
  const partitions = 3;
  const environments = environmentPerPartition('env-cl', partitions);
  const requestsPerEnvironment = 8;
  let prefix: string;
  let cluster: LocalRedisCluster;
  let receiver: HttpReceiver;
  let serve: ServeProcess | undefined;
  let redis: Redis | undefined;
  let env: Record<string, string>;
  let badAcceptsSince: number | undefined;

  before(async () => {
    cluster = await LocalRedisCluster.start();
    receiver = await HttpReceiver.start();
    receiver.respond = (request) => (request.url.startsWith('/bad/') && badAcceptsSince === undefined ? { status: 400, body: 'refused' } : { status: 200, body: 'ok' });
    redis = createTestRedis(cluster.url);
    // Each partition on a master of its own, so that spreading cannot pass or fail by where a random prefix hashes.
    prefix = await cluster.prefixSpreadOver(uniquePrefix('cluster-part'), partitions);
    env = {
      REDIS_URL: cluster.url,
      FLAGSTREAM_REDIS_PREFIX: prefix,
      FLAGSTREAM_REDIS_PARTITIONS: String(partitions),
      ADMIN_TOKEN: token,
      FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1',
      FLAGSTREAM_BATCH_WAIT_CAP_MS: '50',
      FLAGSTREAM_AUTH_FAILURE_LIMIT: '0',
    };
    serve = await ServeProcess.start(env);
  });
  after(() => stopAll(serve, redis, prefix, receiver, cluster));

  test('environments of three partitions: delivered once each, dead letters listed together, a CLI replay, the ledger balanced over partitions, data on several masters', async () => {
    assert.ok(serve !== undefined && redis !== undefined);
    await serve.waitUntilReady(30_000);
    await applyAndWaitForReload(serve, {
      environments: environments.map((id, partition) => ({
        id,
        sdkKeys: [`sdk-${partition}`],
        flags: [
          { name: 'flag_tracked', trafficType: 'user', trackImpressions: true },
          { name: 'flag_quiet', trafficType: 'user', trackImpressions: false },
        ],
        destinations: [
          { id: `ok-${partition}`, type: 'webhook', settings: { url: `${receiver.url}/ok/${partition}`, batchSize: 100 } },
          { id: `bad-${partition}`, type: 'webhook', settings: { url: `${receiver.url}/bad/${partition}`, batchSize: 100 } },
        ],
      })),
    });

    const loads = environments.map(
      (_, partition) =>
        new ImpressionLoad({ targets: () => [serve?.url ?? ''], sdkKey: `sdk-${partition}`, tag: `p${partition}`, trackedFlag: 'flag_tracked', droppedFlag: 'flag_quiet', tracked: trackedPerRequest, dropped: droppedPerRequest }),
    );
    for (const load of loads) load.start({ accepted: requestsPerEnvironment, concurrency: 2, pauseMs: 0 });
    await Promise.all(loads.map((load) => load.finished(60_000)));
    const expected = loads.map((load) => {
      assert.equal(load.accepted.length, load.sent.length, `statuses: ${load.statusSummary()}`);
      return new Set(load.accepted.flatMap((r) => r.trackedKeys));
    });
    const total = expected.reduce((sum, keys) => sum + keys.size, 0);

    const arrived = (path: string) =>
      receiver.requests.filter((r) => r.url === path && (!path.startsWith('/bad/') || (badAcceptsSince !== undefined && r.at >= badAcceptsSince))).flatMap((r) => JSON.parse(r.body) as { id: string; key: string }[]);
    const allArrived = (kind: 'ok' | 'bad') => environments.every((_, p) => new Set(arrived(`/${kind}/${p}`).map((i) => i.key)).size >= (expected[p]?.size ?? 0));
    await receiver.waitFor(() => allArrived('ok'), 60_000, 'every impression at its ok destination');
    const okIds = environments.map((_, partition) => {
      const ok = arrived(`/ok/${partition}`);
      assert.equal(new Set(ok.map((i) => i.id)).size, ok.length, `no impression delivered twice (partition ${partition})`);
      assert.deepEqual(new Set(ok.map((i) => i.key)), expected[partition]);
      return new Set(ok.map((i) => i.id));
    });

    type Ledger = Awaited<ReturnType<typeof fetchLedger>>;
    const destination = (ledger: Ledger, id: string) => ledger.environments.flatMap((e) => e.destinations).find((d) => d.destinationId === id);
    const quiet = async (what: string, done: (ledger: Ledger) => boolean) => {
      let last: Ledger | undefined;
      const deadline = Date.now() + 60_000;
      for (;;) {
        last = await fetchLedger(serve?.url ?? '', token);
        if (last.balanced && done(last)) return last;
        if (Date.now() > deadline) throw new Error(`${what}: ${environments.map((id) => describeLedger(last, id)).join(' | ')}`);
        // Polling the ledger endpoint: nothing announces that the queues are drained.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    const settled = await quiet('bad destinations dead-lettered, ledger balanced', (ledger) =>
      environments.every((_, p) => destination(ledger, `bad-${p}`)?.deadLettered === expected[p]?.size && destination(ledger, `ok-${p}`)?.delivered === expected[p]?.size),
    );
    assert.deepEqual(settled.environments.map((e) => e.environmentId), [...environments].sort());
    const received = settled.environments.reduce((sum, e) => sum + e.received, 0);
    assert.equal(received, loads.reduce((sum, load) => sum + load.accepted.length, 0) * (trackedPerRequest + droppedPerRequest), 'received, summed over partitions');

    // Dead letters of the three partitions in one list, newest first.
    const listed = await fetch(`${serve.url}/admin/v1/dead-letters?limit=10000`, { headers: { authorization: `Bearer ${token}` } });
    const deadLetters = ((await listed.json()) as { deadLetters: DeadLetterSummary[] }).deadLetters;
    assert.deepEqual(new Set(deadLetters.map((d) => d.environmentId)), new Set(environments));
    assert.equal(deadLetters.reduce((sum, d) => sum + d.impressionCount, 0), total);
    assert.deepEqual(deadLetters.map((d) => d.createdAt), deadLetters.map((d) => d.createdAt).sort((a, b) => b - a));

    // Replay everything with the CLI, connected to the cluster with the same partition count.
    badAcceptsSince = Date.now();
    const replay = await runFlagstream(['dlq', 'replay', '--all', '--json'], env);
    assert.equal(replay.code, 0, replay.stderr);
    assert.equal((JSON.parse(replay.stdout) as { impressions: number }).impressions, total, replay.stdout);
    await receiver.waitFor(() => allArrived('bad'), 60_000, 'every replayed impression at its bad destination');
    environments.forEach((_, partition) => {
      const replayed = arrived(`/bad/${partition}`);
      assert.equal(new Set(replayed.map((i) => i.id)).size, replayed.length, `no replayed impression delivered twice (partition ${partition})`);
      assert.deepEqual(new Set(replayed.map((i) => i.id)), okIds[partition], 'a replay keeps the impression ids');
    });
    const final = await quiet('replays settled, ledger balanced', (ledger) => environments.every((_, p) => destination(ledger, `bad-${p}`)?.delivered === expected[p]?.size));
    environments.forEach((_, p) => assert.equal(destination(final, `bad-${p}`)?.replayed, expected[p]?.size));
    const cliLedger = await runFlagstream(['ledger', '--json'], env);
    assert.equal(cliLedger.code, 0, cliLedger.stderr);
    assert.equal((JSON.parse(cliLedger.stdout) as Ledger).balanced, true);

    // The data plane spreads over the masters (the prefix was chosen so that each partition has its own); the control plane is on one.
    const dataPerNode = await keysPerNode(redis, prefix, `{${prefix}:p*}:*`);
    assert.ok(dataPerNode.filter((count) => count > 0).length >= 2, `data keys per node: ${dataPerNode.join(', ')}`);
    const controlPerNode = await keysPerNode(redis, prefix);
    assert.equal(controlPerNode.filter((count) => count > 0).length, 1, `control keys per node: ${controlPerNode.join(', ')}`);

    const errors = serve.lines.filter((line) => line.level >= 50);
    assert.deepEqual(errors, [], 'nothing logged at error level');
    const exit = serve.signal('SIGTERM');
    assert.equal((await serve.exitWithin(20_000)).code, 0, `exit after SIGTERM at ${exit}: ${serve.stderr}`);
  });
});
