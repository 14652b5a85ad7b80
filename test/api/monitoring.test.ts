import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ChainableCommander, Redis } from 'ioredis';
import type { MonitoringReport } from '../../src/admin/monitoring-service.js';
import type { ConfigurationInput } from '../../src/domain/configuration.js';
import { TrafficSeriesBuilder } from '../../src/routing/traffic-series.js';
import { createMonitoringStore, monthOf } from '../../src/stores/monitoring-store.js';
import { deploymentKeys } from '../../src/stores/redis-keys.js';
import { createStatsStore, emptyFlagTraffic, type FlagTraffic } from '../../src/stores/stats-store.js';
import { makeImpression } from '../helpers/impressions.js';
import { createTestRedis, deleteKeys, uniquePrefix } from '../helpers/redis.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

const configuration: ConfigurationInput = {
  environments: [
    {
      id: 'env-prod',
      sdkKeys: ['prod-sdk-key'],
      flags: [
        { name: 'new_checkout', trafficType: 'user', trackImpressions: true },
        { name: 'quiet_flag', trafficType: 'user', trackImpressions: false },
      ],
    },
  ],
};
const sdk = { authorization: 'Bearer prod-sdk-key' };
const minute = 60_000;
const day = 86_400_000;

describe('monitoring: impressions per treatment over time, unique keys and MTKs', () => {
  let app: TestApp;
  // Ten minutes ago, on a minute boundary: the series' buckets are known in advance.
  const base = Math.floor(Date.now() / minute) * minute - 10 * minute;
  let routed = 0;

  const send = async (impressions: Record<string, unknown>[]) => {
    const response = await postJson(`${app.url}/v1/impressions`, { impressions }, sdk);
    assert.equal(response.status, 202, JSON.stringify(response.body));
    routed += 1;
    await app.waitForRoutings(routed);
  };
  const monitoring = async (query: string) => {
    const response = await app.admin('GET', `/environments/env-prod/monitoring?${query}`);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body as MonitoringReport;
  };

  before(async () => {
    app = await startTestApp();
    await app.apply(configuration);
    await send([
      { key: 'user-1', split: 'new_checkout', treatment: 'on', time: base + 1_000 },
      { key: 'user-2', split: 'new_checkout', treatment: 'off', time: base + 2_000 },
      { key: 'user-1', split: 'new_checkout', treatment: 'on', time: base + minute + 5 },
      { key: 'user-3', split: 'new_checkout', treatment: 'on', time: base + minute + 6 },
      { key: 'user-4', split: 'quiet_flag', treatment: 'on', time: base + 3_000 },
    ]);
  });
  after(async () => {
    await app.close();
  });

  test('tracked impressions appear per treatment in minute buckets, with unique keys per treatment', async () => {
    const report = await monitoring(`flag=new_checkout&since=${new Date(base).toISOString()}&step=minute`);
    assert.equal(report.step, 'minute');
    assert.equal(report.stepSeconds, 60);
    assert.equal(report.timestamps[0], base);
    assert.equal(report.since, new Date(base).toISOString());
    const [flag] = report.flags;
    assert.equal(flag?.flag, 'new_checkout');
    assert.deepEqual(flag?.treatments.map((t) => t.treatment), ['off', 'on']);
    const on = flag?.treatments.find((t) => t.treatment === 'on');
    const off = flag?.treatments.find((t) => t.treatment === 'off');
    assert.equal(on?.impressions.length, report.timestamps.length);
    assert.deepEqual(on?.impressions.slice(0, 3), [1, 2, 0]);
    assert.deepEqual(off?.impressions.slice(0, 3), [1, 0, 0]);
    assert.equal(on?.total, 3);
    assert.equal(on?.uniqueKeys, 2);
    assert.equal(off?.uniqueKeys, 1);
    assert.equal(flag?.total, 4);
    assert.equal(flag?.uniqueKeys, 3);
    assert.equal(on?.uniqueKeysPerDay.reduce((sum, n) => sum + n, 0), 2);
    assert.equal(on?.uniqueKeysPerDay.length, report.days.length);
  });

  test('tracking-off impressions appear in no series', async () => {
    const all = await monitoring(`since=${new Date(base).toISOString()}`);
    assert.deepEqual(all.flags.map((f) => f.flag), ['new_checkout']);
    const quiet = await monitoring(`flag=quiet_flag&since=${new Date(base).toISOString()}`);
    assert.deepEqual(quiet.flags, [{ flag: 'quiet_flag', total: 0, uniqueKeys: 0, treatments: [] }]);
  });

  test('hour buckets hold the same traffic, and keep what minutes no longer keep', async () => {
    const oldTime = Date.now() - 30 * day;
    await send([{ key: 'user-old', split: 'new_checkout', treatment: 'off', time: oldTime }]);
    const hours = await monitoring('flag=new_checkout&since=31d&step=hour');
    assert.equal(hours.step, 'hour');
    const off = hours.flags[0]?.treatments.find((t) => t.treatment === 'off');
    const on = hours.flags[0]?.treatments.find((t) => t.treatment === 'on');
    assert.equal(on?.total, 3);
    assert.equal(off?.total, 2);
    assert.equal(off?.impressions[hours.timestamps.indexOf(Math.floor(oldTime / 3_600_000) * 3_600_000)], 1);
    // Minute buckets are kept 7 days: asking for 30 days of them is an error that says what to do.
    const tooLong = await app.admin('GET', '/environments/env-prod/monitoring?since=30d&step=minute');
    assert.equal(tooLong.status, 400);
    assert.deepEqual((tooLong.body as { error: { field: string } }).error.field, 'since');
    assert.match((tooLong.body as { error: { message: string } }).error.message, /minute buckets are kept 7 day\(s\).*use step=hour/);
    // Without a step, a range longer than a day is served in hours.
    assert.equal((await monitoring('since=2d')).step, 'hour');
  });

  test('an impression stamped in the future is counted at its reception; one older than every retention only in lifetime stats', async () => {
    const before = await monitoring('flag=new_checkout&since=15m&step=minute');
    const total = (report: MonitoringReport) => report.flags[0]?.total ?? 0;
    await send([
      // Ingest accepts up to an hour ahead and nothing before 2000: both ends of what it lets through.
      { key: 'user-future', split: 'new_checkout', treatment: 'on', time: Date.now() + 30 * minute },
      { key: 'user-ancient', split: 'new_checkout', treatment: 'on', time: Date.UTC(2001, 0, 1) },
    ]);
    const afterwards = await monitoring('flag=new_checkout&since=15m&step=minute');
    assert.equal(total(afterwards) - total(before), 1);
    const nowBucket = Math.floor((Date.now() - 1) / minute) * minute;
    const on = afterwards.flags[0]?.treatments.find((t) => t.treatment === 'on');
    const index = afterwards.timestamps.indexOf(nowBucket);
    assert.ok((on?.impressions[index] ?? 0) + (on?.impressions[index - 1] ?? 0) >= 1, 'counted in the minute it arrived');
    const lifetime = (await app.ctx.stats.flagStats('env-prod')).find((f) => f.flag === 'new_checkout');
    assert.equal(lifetime?.treatments.on, 5);
  });

  test('MTKs count every evaluated key: tracked, tracking-off, and /keys/ss|cs (counts carry none)', async () => {
    const month = monthOf(Date.now());
    const mtks = async () => ((await app.admin('GET', '/environments/env-prod/mtks?months=1')).body as { months: { month: string; keys: number }[] }).months;
    // user-1, -2, -3, -4 (tracking off), -old, -future, -ancient
    assert.deepEqual(await mtks(), [{ month, keys: 7 }]);
    assert.equal((await postJson(`${app.url}/api/v1/keys/ss`, { keys: [{ f: 'new_checkout', ks: ['user-1', 'user-ss'] }] }, sdk)).status, 200);
    assert.equal((await postJson(`${app.url}/api/v1/keys/cs`, { keys: [{ k: 'user-cs', fs: ['quiet_flag', 'other_flag'] }] }, sdk)).status, 200);
    assert.equal((await postJson(`${app.url}/api/testImpressions/count`, { pf: [{ f: 'new_checkout', m: Date.now(), rc: 500 }] }, sdk)).status, 200);
    assert.deepEqual(await mtks(), [{ month, keys: 9 }]);
    const report = await monitoring('since=15m');
    assert.deepEqual(report.mtks, [{ month, keys: 9 }]);
    const year = (await app.admin('GET', '/environments/env-prod/mtks')).body as { months: { month: string }[] };
    assert.equal(year.months.length, 12);
    assert.equal(year.months.at(-1)?.month, month);
  });

  test('an unknown environment is a 404 and bad parameters a 400 naming the field', async () => {
    for (const path of ['/environments/nope/monitoring', '/environments/nope/mtks']) {
      const response = await app.admin('GET', path);
      assert.equal(response.status, 404, path);
      assert.equal((response.body as { error: { code: string } }).error.code, 'FLAGSTREAM_ERR_NOT_FOUND');
    }
    for (const [query, field] of [
      ['step=second', 'step'],
      ['since=last%20week', 'since'],
      ['since=1h&until=2h', 'since'],
      ['limit=0', 'limit'],
    ] as const) {
      const response = await app.admin('GET', `/environments/env-prod/monitoring?${query}`);
      assert.equal(response.status, 400, query);
      assert.equal((response.body as { error: { field: string } }).error.field, field, query);
    }
    assert.equal((await app.admin('GET', '/environments/env-prod/mtks?months=99')).status, 400);
  });
});

/** Counts the pipelines a Redis client opens and records every command queued in them. */
function recording(redis: Redis) {
  const commands: { name: string; args: unknown[] }[] = [];
  let pipelines = 0;
  const proxy = new Proxy(redis, {
    get(target, property, receiver) {
      if (property !== 'pipeline') return Reflect.get(target, property, receiver) as unknown;
      return () => {
        pipelines += 1;
        const pipeline = target.pipeline();
        const wrapped: ChainableCommander = new Proxy(pipeline, {
          get(inner, name, innerReceiver) {
            const value = Reflect.get(inner, name, innerReceiver) as unknown;
            if (typeof value !== 'function' || name === 'exec' || typeof name !== 'string') return value;
            return (...args: unknown[]) => {
              commands.push({ name, args });
              (value as (...a: unknown[]) => unknown).apply(inner, args);
              return wrapped;
            };
          },
        });
        return wrapped;
      };
    },
  });
  return { redis: proxy, commands, pipelines: () => pipelines };
}

describe('monitoring writes: one pipeline per batch, never a command per impression', () => {
  const prefix = uniquePrefix('monwrite');
  const redis = createTestRedis();
  after(async () => {
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  const start = Math.floor(Date.now() / minute) * minute - 3 * minute;
  const record = async (count: number) => {
    const spy = recording(redis);
    const keys = deploymentKeys(prefix, redis);
    const monitoring = createMonitoringStore({ redis: spy.redis, keys, clock: Date.now, retention: { minutesMs: 7 * day, hoursMs: 90 * day } });
    const stats = createStatsStore({ redis: spy.redis, keys, monitoring });
    const traffic = new Map<string, FlagTraffic>([['new_checkout', emptyFlagTraffic()]]);
    const series = new TrafficSeriesBuilder();
    for (let i = 0; i < count; i += 1) {
      // Three minutes, two treatments, `count` distinct keys.
      const impression = makeImpression({ key: `user-${i}`, treatment: i % 2 === 0 ? 'on' : 'off', time: start + (i % 3) * minute, receptionTimestamp: Date.now() });
      traffic.get('new_checkout')?.keys.add(impression.key);
      series.add(impression);
    }
    await stats.record('env-w', traffic, series.series);
    return { commands: spy.commands, pipelines: spy.pipelines(), monitoring };
  };

  test('5 000 impressions cost one pipeline whose size follows flags × minutes × treatments, arguments chunked at 1 000', async () => {
    const small = await record(60);
    const large = await record(5_000);
    assert.equal(small.pipelines, 1);
    assert.equal(large.pipelines, 1);
    const notPfadd = (commands: { name: string }[]) => commands.filter((c) => c.name !== 'pfadd').length;
    assert.equal(notPfadd(large.commands), notPfadd(small.commands));
    assert.ok(large.commands.length < 60, `${large.commands.length} commands`);
    for (const command of large.commands) assert.ok(command.args.length <= 1001, `${command.name} with ${command.args.length} arguments`);
    // Distinct keys are all counted, whatever the chunking: exact for small sets, ±1 % for HyperLogLog.
    const day = Math.floor(Date.now() / 86_400_000);
    const unique = await large.monitoring.uniqueKeys('env-w', 'new_checkout', ['off', 'on'], day - 1, day);
    assert.ok(Math.abs(unique.all - 5_000) <= 100, String(unique.all));
  });
});
