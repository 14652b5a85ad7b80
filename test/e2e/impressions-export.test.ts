import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { after, before, describe, test } from 'node:test';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { parse as parseCsvSync } from 'csv-parse/sync';
import { type BackfillEvent, createImpressionsExportService, type ExportFormat, type ImpressionQueryInput, type ImpressionsExportService } from '../../src/admin/impressions-export-service.js';
import { s3Columns, s3Connector, s3Row, S3SettingsSchema } from '../../src/connectors/s3/s3-connector.js';
import { createDestinationGuard } from '../../src/delivery/destination-guard.js';
import { createHttpTransport } from '../../src/delivery/http-transport.js';
import type { Impression } from '../../src/domain/impression.js';
import { runFlagstream } from '../helpers/cli.js';
import { deliverThrough } from '../helpers/connector-harness.js';
import { deferred } from '../helpers/deferred.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { makeImpression } from '../helpers/impressions.js';
import { waitForQuietLedger } from '../helpers/ledger.js';
import { testRedisUrl } from '../helpers/redis.js';
import { type LocalS3, s3Credentials, startLocalS3 } from '../helpers/s3-server.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

const bucket = 'archive';
const hourMs = 3_600_000;
/** Eight hourly partitions over three days: 2026-11-23 21h–23h, 2026-11-24 05h and 13h, 2026-11-25 00h–02h (UTC). */
const hours = [
  Date.UTC(2026, 10, 23, 21),
  Date.UTC(2026, 10, 23, 22),
  Date.UTC(2026, 10, 23, 23),
  Date.UTC(2026, 10, 24, 5),
  Date.UTC(2026, 10, 24, 13),
  Date.UTC(2026, 10, 25, 0),
  Date.UTC(2026, 10, 25, 1),
  Date.UTC(2026, 10, 25, 2),
];
const flags = ['new_checkout', 'dark_mode', 'legacy_flag'];
const since = '2026-11-23T22:30:00Z';
const until = '2026-11-25T01:15:00Z';

/** Six impressions an hour, ten minutes apart, over three flags, two treatments and four keys. */
function archivedImpressions(environmentId: string): Impression[] {
  return hours.flatMap((hour, h) =>
    Array.from({ length: 6 }, (_, i) =>
      makeImpression({
        environmentId,
        key: `user-${(i + h) % 4}`,
        split: flags[i % 3] as string,
        treatment: i % 2 === 0 ? 'on' : 'off',
        time: hour + i * 600_000 + 7_000,
        trafficTypeId: 'tt-user',
        sdk: 'nodejs',
        sdkVersion: '11.11.0',
        ...(i === 3 ? { properties: '{"plan":"pro, annual","note":"says \\"hi\\""}' } : {}),
        ...(i === 0 ? { bucketingKey: 'bk-1' } : {}),
        ...(i === 5 ? { label: undefined } : {}),
      }),
    ),
  );
}

const sortById = <T extends { impressionId?: unknown; id?: unknown }>(rows: T[]) => [...rows].sort((a, b) => String(a.impressionId ?? a.id).localeCompare(String(b.impressionId ?? b.id)));
const rowsOf = (impressions: readonly Impression[]) => sortById(impressions.map((i) => ({ ...s3Row(i) })));
const inRange = (i: Impression, from = Date.parse(since), to = Date.parse(until)) => i.time >= from && i.time < to;
const jsonLines = (body: string) => body.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
/** CSV back to rows: empty is null, the number columns numbers. */
function csvRows(body: string): Record<string, unknown>[] {
  const records = parseCsvSync(body, { columns: true }) as Record<string, string>[];
  return records.map((record) =>
    Object.fromEntries(s3Columns.map((c) => [c, record[c] === '' ? null : ['splitVersion', 'timestamp', 'receptionTimestamp'].includes(c) ? Number(record[c]) : record[c]])),
  );
}

describe('impressions export and backfill from an s3 archive (s3rver, several hours of partitions)', () => {
  let s3: LocalS3;
  let app: TestApp;
  let receiver: HttpReceiver;
  let service: ImpressionsExportService;
  let writer: S3Client;
  const impressions = archivedImpressions('env-x');

  async function exportText(input: ImpressionQueryInput, format: ExportFormat) {
    const { stream, done } = service.exportStream(service.resolveQuery(input), format);
    const body = await text(stream);
    return { body, report: await done };
  }

  before(async () => {
    s3 = await startLocalS3(bucket);
    receiver = await HttpReceiver.start();
    app = await startTestApp();
    // One archive per format, each under its own prefix: jsonl.gz (the default), plain csv, parquet.
    const settings = (format: string) => ({
      bucket,
      prefix: `${format}/`,
      endpoint: s3.endpoint,
      forcePathStyle: true,
      ...s3Credentials,
      ...(format === 'csv' ? { format: 'csv', compression: 'none' } : format === 'parquet' ? { format: 'parquet' } : {}),
    });
    await app.apply({
      environments: [
        {
          id: 'env-x',
          flags: [
            { name: 'new_checkout' },
            { name: 'dark_mode' },
            { name: 'legacy_flag', trackImpressions: false },
          ],
          destinations: [
            { id: 'lake-jsonl', type: 's3', settings: settings('jsonl') },
            { id: 'lake-csv', type: 's3', settings: settings('csv') },
            { id: 'lake-parquet', type: 's3', settings: settings('parquet') },
            { id: 'lake-broken', type: 's3', settings: settings('broken') },
            { id: 'hook', type: 'webhook', settings: { url: `${receiver.url}/hook` }, filters: { flags: ['new_checkout'] } },
            { id: 'hook-off', type: 'webhook', enabled: false, settings: { url: `${receiver.url}/off` } },
          ],
        },
        { id: 'env-y', destinations: [{ id: 'other-hook', type: 'webhook', settings: { url: `${receiver.url}/other` } }] },
      ],
    });
    // The archive, written by the real connector through the delivery core: two batches, so two objects an hour.
    const transport = createHttpTransport({ guard: createDestinationGuard(['127.0.0.1']), userAgent: 'test' });
    try {
      for (const format of ['jsonl', 'csv', 'parquet']) {
        for (const half of [0, 1]) {
          const settlement = await deliverThrough(s3Connector, settings(format), impressions.filter((_, n) => n % 2 === half), transport, `lake-${format}`);
          assert.equal(settlement.delivered, impressions.length / 2);
        }
      }
      // Another environment under the same prefix: never listed by a query of env-x.
      await deliverThrough(s3Connector, settings('jsonl'), archivedImpressions('env-y'), transport, 'lake-jsonl');
    } finally {
      transport.close();
    }
    writer = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: s3Credentials });
    service = createImpressionsExportService({
      config: () => app.ctx.config.current(),
      partitionFor: app.ctx.partitionFor,
      guard: createDestinationGuard(['127.0.0.1']),
      clock: app.ctx.clock,
      limits: { batchSize: 4, maxUnfinishedJobs: 2, pollIntervalMs: 20 },
    });
  });
  after(async () => {
    writer.destroy();
    await app.close();
    await receiver.close();
    await s3.close();
  });

  test('lists only the partitions of the range and reads only their objects, one at a time', async () => {
    s3.reset();
    const { body, report } = await exportText({ from: 'lake-jsonl', since, until }, 'jsonl');
    assert.deepEqual(sortById(jsonLines(body)), rowsOf(impressions.filter((i) => inRange(i))));

    const listed = s3.listings().map((r) => r.query.get('prefix'));
    assert.deepEqual(listed, [
      'jsonl/env=env-x/dt=2026-11-23/hour=22/',
      'jsonl/env=env-x/dt=2026-11-23/hour=23/',
      'jsonl/env=env-x/dt=2026-11-24/',
      'jsonl/env=env-x/dt=2026-11-25/hour=00/',
      'jsonl/env=env-x/dt=2026-11-25/hour=01/',
    ]);
    // Every object of those partitions, and nothing else (21h, 02h and env-y exist too).
    const read = s3.objectReads().sort();
    const partitionOf = (key: string) => /dt=(\d{4}-\d{2}-\d{2})\/hour=(\d{2})/.exec(key)?.slice(1).join('T') ?? '';
    assert.deepEqual([...new Set(read.map(partitionOf))].sort(), ['2026-11-23T22', '2026-11-23T23', '2026-11-24T05', '2026-11-24T13', '2026-11-25T00', '2026-11-25T01']);
    assert.equal(read.length, 12, 'two objects in each of the six partitions');
    assert.ok(read.every((key) => key.startsWith('jsonl/env=env-x/')));
    assert.equal(s3.maxConcurrentObjectReads, 1);
    assert.deepEqual({ partitions: report.partitions, objects: report.objects, rowsRead: report.rowsRead, rowsMatched: report.rowsMatched }, { partitions: 5, objects: 12, rowsRead: 36, rowsMatched: impressions.filter((i) => inRange(i)).length });

    // Rows come partition by partition, oldest first.
    const times = jsonLines(body).map((row) => Math.floor(Number(row.timestamp) / hourMs));
    assert.deepEqual(times, [...times].sort((a, b) => a - b));
  });

  test('filters: OR within flags, treatments and keys, AND across them, the range cut inside hours', async () => {
    const input = { from: 'lake-jsonl', flags: ['new_checkout', 'dark_mode'], treatments: ['on'], keys: ['user-1', 'user-2'], since, until };
    const expected = impressions.filter((i) => inRange(i) && ['new_checkout', 'dark_mode'].includes(i.split) && i.treatment === 'on' && ['user-1', 'user-2'].includes(i.key));
    assert.ok(expected.length >= 3 && expected.length < impressions.filter((i) => inRange(i)).length / 3, `a selective query (${expected.length} rows)`);
    const { body, report } = await exportText(input, 'jsonl');
    assert.deepEqual(sortById(jsonLines(body)), rowsOf(expected));
    assert.equal(report.rowsMatched, expected.length);
    assert.deepEqual(report.byFlag, Object.fromEntries(['new_checkout', 'dark_mode'].map((f) => [f, expected.filter((i) => i.split === f).length]).filter(([, n]) => n !== 0)));

    const csv = await exportText(input, 'csv');
    assert.equal(csv.body.split('\r\n')[0], s3Columns.join(','));
    assert.deepEqual(sortById(csvRows(csv.body)), rowsOf(expected));
  });

  test('the CSV and Parquet archives give the same rows as the JSON-lines one', async () => {
    const expected = rowsOf(impressions.filter((i) => inRange(i)));
    for (const from of ['lake-csv', 'lake-parquet']) {
      s3.reset();
      const { body } = await exportText({ from, since, until }, 'jsonl');
      assert.deepEqual(sortById(jsonLines(body)), expected, from);
      assert.equal(s3.maxConcurrentObjectReads, 1, from);
      assert.ok(s3.objectReads().every((key) => !/hour=21|hour=02/.test(key)), `${from}: only the range's partitions`);
    }
    // Parquet is read by ranges (footer, then column chunks), not downloaded whole.
    assert.ok(s3.requests.some((r) => r.method === 'GET' && r.range !== undefined));
  });

  test('rows that are not archive rows are skipped and reported, the rest exported', async () => {
    const good = JSON.stringify(s3Row(makeImpression({ environmentId: 'env-x', time: Date.UTC(2026, 10, 24, 5, 1) })));
    await writer.send(new PutObjectCommand({ Bucket: bucket, Key: 'broken/env=env-x/dt=2026-11-24/hour=05/hand-made.jsonl', Body: `${good}\nnot json\n{"key":"k"}\n` }));
    await writer.send(new PutObjectCommand({ Bucket: bucket, Key: 'broken/env=env-x/dt=2026-11-24/hour=05/_SUCCESS', Body: '' }));
    const { body, report } = await exportText({ from: 'lake-broken', since, until }, 'jsonl');
    assert.equal(jsonLines(body).length, 1);
    assert.deepEqual({ objects: report.objects, otherObjects: report.otherObjects, unreadableRows: report.unreadableRows }, { objects: 1, otherObjects: 1, unreadableRows: 2 });
    assert.deepEqual(report.unreadableSamples.map((s) => [s.row, s.problem]), [
      [2, 'not a JSON object'],
      [3, 'treatment: Invalid input: expected string, received null'],
    ]);
  });

  test('bad queries get clear errors before anything is read', () => {
    const cases: [ImpressionQueryInput, RegExp][] = [
      [{ from: 'nope', since }, /no destination "nope"/],
      [{ from: 'hook', since }, /"hook" is a webhook destination; export reads the archive of an s3 destination/],
      [{ from: 'lake-jsonl', since: 'last week' }, /since: expected an ISO date/],
      [{ from: 'lake-jsonl', since: until, until: since }, /until \(2026-11-23T22:30:00.000Z\) must be after since/],
    ];
    for (const [input, message] of cases) assert.throws(() => service.resolveQuery(input), message);
  });

  test('backfill sends the matching impressions with their original ids through the delivery core; the ledger balances', async () => {
    const query = service.resolveQuery({ from: 'lake-parquet', since, until });
    const matched = impressions.filter((i) => inRange(i));
    const wanted = matched.filter((i) => i.split === 'new_checkout');

    const dry = await service.backfill(query, { to: 'hook', dryRun: true });
    assert.deepEqual(
      { sent: dry.sent, jobs: dry.jobs, rowsMatched: dry.rowsMatched, notSent: dry.notSent },
      {
        sent: wanted.length,
        jobs: Math.ceil(wanted.length / 4),
        rowsMatched: matched.length,
        notSent: { tracking_off: matched.filter((i) => i.split === 'legacy_flag').length, filtered: matched.filter((i) => i.split === 'dark_mode').length },
      },
    );
    assert.deepEqual(await app.ctx.queues.delivery.getJobCounts('wait', 'prioritized', 'delayed', 'active'), { wait: 0, prioritized: 0, delayed: 0, active: 0 });
    assert.equal(receiver.requests.length, 0);

    const events: BackfillEvent[] = [];
    const report = await service.backfill(query, { to: 'hook', onEvent: (event) => events.push(event) });
    assert.equal(report.sent, wanted.length);
    assert.equal(report.jobs, Math.ceil(wanted.length / 4));
    const ledger = await waitForQuietLedger(app);
    const hook = ledger.environments.find((e) => e.environmentId === 'env-x')?.destinations.find((d) => d.destinationId === 'hook');
    assert.deepEqual({ routed: hook?.routed, delivered: hook?.delivered, deadLettered: hook?.deadLettered, difference: hook?.difference }, { routed: wanted.length, delivered: wanted.length, deadLettered: 0, difference: 0 });

    const received = receiver.impressions();
    assert.deepEqual(received.map((i) => i.id).sort(), wanted.map((i) => i.id).sort(), 'original ids, each once');
    const sample = wanted.find((i) => i.properties !== undefined && i.time > Date.UTC(2026, 10, 24)) as Impression;
    const arrived = received.find((i) => i.id === sample.id) as Record<string, unknown>;
    assert.deepEqual(
      { key: arrived.key, split: arrived.split, treatment: arrived.treatment, time: arrived.time, label: arrived.label, properties: arrived.properties, environmentId: arrived.environmentId, trafficTypeName: arrived.trafficTypeName },
      { key: sample.key, split: sample.split, treatment: sample.treatment, time: sample.time, label: sample.label, properties: sample.properties, environmentId: 'env-x', trafficTypeName: 'user' },
    );
    const withBucketingKey = wanted.find((i) => i.bucketingKey !== undefined) as Impression;
    assert.deepEqual(
      { bucketingKey: received.find((i) => i.id === withBucketingKey.id)?.bucketingKey, sdk: received.find((i) => i.id === withBucketingKey.id)?.sdk },
      { bucketingKey: 'bk-1', sdk: 'nodejs' },
    );
    assert.ok(events.some((e) => e.kind === 'progress'));
  });

  test('backfill refuses another environment, a disabled destination and the archive itself, saying why', async () => {
    const query = service.resolveQuery({ from: 'lake-jsonl', since, until });
    await assert.rejects(service.backfill(query, { to: 'other-hook' }), /destination "other-hook" is in environment "env-y", but "lake-jsonl" archives environment "env-x": a backfill only goes to a destination of the same environment/);
    await assert.rejects(service.backfill(query, { to: 'hook-off' }), /destination "hook-off" is disabled; enable it first/);
    await assert.rejects(service.backfill(query, { to: 'lake-jsonl' }), /"lake-jsonl" is the archive being read/);
    await assert.rejects(service.backfill(query, { to: 'gone' }), /no destination "gone"/);
  });

  test('the admin API streams the export and runs backfills; bad input is a 4xx naming the field', async () => {
    const headers = { authorization: 'Bearer test-admin-token', 'content-type': 'application/json' };
    const query = { from: 'lake-jsonl', flags: ['dark_mode'], since, until };
    const csv = await app.server.inject({ method: 'POST', url: '/admin/v1/impressions/export', headers, payload: { ...query, format: 'csv' } });
    assert.equal(csv.statusCode, 200);
    assert.match(String(csv.headers['content-type']), /^text\/csv/);
    assert.deepEqual(sortById(csvRows(csv.body)), rowsOf(impressions.filter((i) => inRange(i) && i.split === 'dark_mode')));
    const jsonl = await app.server.inject({ method: 'POST', url: '/admin/v1/impressions/export', headers, payload: query });
    assert.match(String(jsonl.headers['content-type']), /^application\/x-ndjson/);
    assert.equal(jsonLines(jsonl.body).length, impressions.filter((i) => inRange(i) && i.split === 'dark_mode').length);

    const dry = await app.server.inject({ method: 'POST', url: '/admin/v1/impressions/backfill', headers, payload: { ...query, to: 'hook', dryRun: true } });
    assert.equal(dry.statusCode, 200);
    assert.deepEqual((JSON.parse(dry.body) as { sent: number; notSent: unknown }).notSent, { filtered: impressions.filter((i) => inRange(i) && i.split === 'dark_mode').length });

    const noSince = await app.server.inject({ method: 'POST', url: '/admin/v1/impressions/export', headers, payload: { from: 'lake-jsonl' } });
    assert.equal(noSince.statusCode, 400);
    assert.equal((JSON.parse(noSince.body) as { error: { field: string } }).error.field, 'since');
    const badFormat = await app.server.inject({ method: 'POST', url: '/admin/v1/impressions/export', headers, payload: { ...query, format: 'xml' } });
    assert.equal((JSON.parse(badFormat.body) as { error: { field: string } }).error.field, 'format');
    const unknown = await app.server.inject({ method: 'POST', url: '/admin/v1/impressions/export', headers, payload: { from: 'nope', since } });
    assert.equal(unknown.statusCode, 404);
    const anonymous = await app.server.inject({ method: 'POST', url: '/admin/v1/impressions/export', headers: { 'content-type': 'application/json' }, payload: query });
    assert.equal(anonymous.statusCode, 401);
  });

  test('flagstream impressions export: a file in CSV, counts with --dry-run, usage errors', async () => {
    const env = { REDIS_URL: testRedisUrl, FLAGSTREAM_REDIS_PREFIX: app.ctx.env.FLAGSTREAM_REDIS_PREFIX, FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1' };
    const directory = await mkdtemp(join(tmpdir(), 'flagstream-export-'));
    try {
      const file = join(directory, 'out.csv');
      const args = ['impressions', 'export', '--from', 'lake-csv', '--flag', 'new_checkout', '--flag', 'legacy_flag', '--key', 'user-0', '--since', since, '--until', until];
      const written = await runFlagstream([...args, '--format', 'csv', '-o', file], env);
      assert.equal(written.code, 0, written.stderr);
      const expected = impressions.filter((i) => inRange(i) && ['new_checkout', 'legacy_flag'].includes(i.split) && i.key === 'user-0');
      assert.deepEqual(sortById(csvRows(await readFile(file, 'utf8'))), rowsOf(expected));
      assert.match(written.stderr, new RegExp(`exported ${expected.length} row\\(s\\) to ${file}`));
      assert.doesNotMatch(written.stderr, /\u001b\[K/, 'no progress bar when stderr is not a terminal');

      const counts = await runFlagstream([...args, '--dry-run', '--json'], env);
      assert.equal(counts.code, 0, counts.stderr);
      const report = JSON.parse(counts.stdout) as { rowsMatched: number; byFlag: Record<string, number> };
      assert.equal(report.rowsMatched, expected.length);

      const stdout = await runFlagstream(['impressions', 'export', '--from', 'lake-jsonl', '--treatment', 'off', '--since', since, '--until', until], env);
      assert.equal(stdout.code, 0, stdout.stderr);
      assert.deepEqual(sortById(jsonLines(stdout.stdout)), rowsOf(impressions.filter((i) => inRange(i) && i.treatment === 'off')));

      const mixed = await runFlagstream([...args, '--to', 'hook', '--format', 'csv'], env);
      assert.equal(mixed.code, 1);
      assert.match(mixed.stderr, /--to sends the impressions to a destination: leave out --format and -o/);
      const noSince = await runFlagstream(['impressions', 'export', '--from', 'lake-csv'], env);
      assert.notEqual(noSince.code, 0);
      assert.match(noSince.stderr, /--since <time>/);
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});

describe('backfill backpressure: it never runs ahead of the delivery backlog', () => {
  let s3: LocalS3;
  let app: TestApp;
  let receiver: HttpReceiver;
  const impressions = archivedImpressions('env-b');

  before(async () => {
    s3 = await startLocalS3(bucket);
    receiver = await HttpReceiver.start();
    app = await startTestApp({ workers: false });
    const settings = S3SettingsSchema.parse({ bucket, prefix: 'b/', endpoint: s3.endpoint, forcePathStyle: true, ...s3Credentials });
    await app.apply({
      environments: [
        {
          id: 'env-b',
          destinations: [
            { id: 'lake', type: 's3', settings: { ...settings } },
            { id: 'hook', type: 'webhook', settings: { url: `${receiver.url}/hook` } },
          ],
        },
      ],
    });
    const transport = createHttpTransport({ guard: createDestinationGuard(['127.0.0.1']), userAgent: 'test' });
    try {
      await deliverThrough(s3Connector, { ...settings }, impressions, transport, 'lake');
    } finally {
      transport.close();
    }
  });
  after(async () => {
    await app.close();
    await receiver.close();
    await s3.close();
  });

  const serviceWith = (limits: Parameters<typeof createImpressionsExportService>[0]['limits']) =>
    createImpressionsExportService({ config: () => app.ctx.config.current(), partitionFor: app.ctx.partitionFor, guard: createDestinationGuard(['127.0.0.1']), clock: app.ctx.clock, limits });

  test('with no worker running it stops at either bound, says how to resume, and what it queued is still delivered', async () => {
    const query = { from: 'lake', since: '2026-11-23T00:00:00Z', until: '2026-11-26T00:00:00Z' };
    // Bound 1: jobs waiting in the delivery queue, whoever queued them (live traffic goes first).
    const byQueue = serviceWith({ batchSize: 5, maxWaitingJobs: 3, maxUnfinishedJobs: 100, pollIntervalMs: 20, stallTimeoutMs: 300 });
    await assert.rejects(byQueue.backfill(byQueue.resolveQuery(query), { to: 'hook' }), /did not move for 0\.3 s \(3 jobs waiting, 3 of this backfill unfinished; .*\. 15 impression\(s\) in 3 job\(s\) were queued/);
    assert.deepEqual(await app.ctx.queues.delivery.getJobCounts('wait', 'prioritized'), { wait: 0, prioritized: 3 });

    // Bound 2: the backfill's own unfinished jobs, whatever else waits.
    const byOwnJobs = serviceWith({ batchSize: 5, maxUnfinishedJobs: 2, pollIntervalMs: 20, stallTimeoutMs: 300 });
    const waits: BackfillEvent[] = [];
    await assert.rejects(
      byOwnJobs.backfill(byOwnJobs.resolveQuery(query), { to: 'hook', onEvent: (e) => e.kind === 'waiting' && waits.push(e) }),
      /backfill stopped: the delivery backlog did not move for 0\.3 s \(5 jobs waiting, 2 of this backfill unfinished; are the workers running, is "hook" healthy\?\)\. 10 impression\(s\) in 2 job\(s\) were queued .* run it again with --since 2026-11-23T00:00:00\.000Z/,
    );
    assert.ok(waits.length > 0);
    // Exactly the bounds: 3 + 2 jobs of five, priority behind live traffic.
    assert.deepEqual(await app.ctx.queues.delivery.getJobCounts('wait', 'prioritized'), { wait: 0, prioritized: 5 });

    app.startWorkers();
    const ledger = await waitForQuietLedger(app);
    assert.equal(ledger.environments[0]?.destinations.find((d) => d.destinationId === 'hook')?.delivered, 25);
    assert.equal(receiver.impressions().length, 25);
  });

  test('while the destination is paused it holds at the bound; once resumed it sends everything', async () => {
    receiver.requests.length = 0;
    assert.equal((await app.admin('POST', '/destinations/hook/pause', { reason: 'backfill test' })).status, 200);
    const service = serviceWith({ batchSize: 5, maxUnfinishedJobs: 2, pollIntervalMs: 10 });
    const held = deferred();
    const running = service.backfill(service.resolveQuery({ from: 'lake', since: '2026-11-23T00:00:00Z', until: '2026-11-26T00:00:00Z' }), {
      to: 'hook',
      onEvent: (e) => {
        if (e.kind === 'waiting') held.resolve();
      },
    });
    await held.promise;
    // The paused destination's jobs wait (delayed); the backfill has queued its two and no more.
    const counts = await app.ctx.queues.delivery.getJobCounts('wait', 'prioritized', 'delayed', 'active');
    assert.equal((counts.wait ?? 0) + (counts.prioritized ?? 0) + (counts.delayed ?? 0) + (counts.active ?? 0), 2, JSON.stringify(counts));
    assert.equal(receiver.requests.length, 0);

    assert.equal((await app.admin('POST', '/destinations/hook/resume')).status, 200);
    const report = await running;
    assert.equal(report.sent, impressions.length);
    assert.equal(report.jobs, Math.ceil(impressions.length / 5));
    await waitForQuietLedger(app);
    assert.deepEqual(receiver.impressions().map((i) => i.id).sort(), impressions.map((i) => i.id).sort());
  });
});
