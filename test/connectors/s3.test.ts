import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { parquetMetadata, parquetReadObjects, parquetSchema } from 'hyparquet';
import nock from 'nock';
import type { EncodedRequest, SendResult } from '../../src/connectors/connector.js';
import { classifyS3Result, s3BatchId, s3Columns, s3Connector, type S3PutRequest, type S3PutResponse } from '../../src/connectors/s3/s3-connector.js';
import type { BatchSettlement } from '../../src/delivery/deliver-batch.js';
import { createDestinationGuard } from '../../src/delivery/destination-guard.js';
import { createHttpTransport } from '../../src/delivery/http-transport.js';
import type { Impression } from '../../src/domain/impression.js';
import { deliverThrough } from '../helpers/connector-harness.js';
import { makeImpression } from '../helpers/impressions.js';

/** The parts of s3rver (untyped CommonJS) these tests use. */
interface S3rverServer {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverConstructor = new (options: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string }[];
}) => S3rverServer;
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;

const now = 1_718_900_000_000;
/** 2024-06-20T16:13:20.000Z */
const hour16 = 1_718_900_000_000;
const bucket = 'impressions';
/** s3rver's built-in account. */
const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

const impression = makeImpression;

describe('s3 connector against s3rver', () => {
  let server: S3rverServer;
  let directory: string;
  let endpoint: string;
  let reader: S3Client;
  const transport = createHttpTransport({ guard: createDestinationGuard(['127.0.0.1']), userAgent: 'test' });
  let prefixCounter = 0;

  /** Settings for the local store, each test under its own prefix. */
  function rawSettings(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    prefixCounter += 1;
    return { bucket, prefix: `test-${prefixCounter}/`, endpoint, forcePathStyle: true, ...credentials, ...overrides };
  }

  function deliver(items: readonly Impression[], raw: Record<string, unknown>): Promise<BatchSettlement> {
    return deliverThrough(s3Connector, raw, items, transport, 's3-test');
  }

  async function listKeys(prefix: string): Promise<string[]> {
    const listing = await reader.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return (listing.Contents ?? []).map((object) => object.Key ?? '').sort();
  }

  async function readObject(key: string): Promise<{ body: Buffer; contentType: string | undefined }> {
    const object = await reader.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const bytes = await object.Body?.transformToByteArray();
    return { body: Buffer.from(bytes ?? []), contentType: object.ContentType };
  }

  before(async () => {
    nock.disableNetConnect();
    nock.enableNetConnect('127.0.0.1');
    directory = await mkdtemp(join(tmpdir(), 'flagstream-s3rver-'));
    server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket }] });
    const address = await server.run();
    endpoint = `http://127.0.0.1:${address.port}`;
    reader = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials });
  });

  after(async () => {
    reader.destroy();
    transport.close();
    await server.close();
    await rm(directory, { recursive: true, force: true });
    nock.enableNetConnect();
  });

  test('writes gzipped JSON lines, one object per environment and hour, with Split’s column names', async () => {
    const a = impression({ bucketingKey: 'account-7', properties: '{"plan":"pro"}', trafficTypeId: 'tt-1', sdk: 'nodejs', sdkVersion: '11.11.0', machineName: 'web-1', machineIp: '10.0.0.5' });
    const b = impression({ label: undefined });
    const nextHour = impression({ time: hour16 + 3_600_000 });
    const staging = impression({ environmentId: 'env-stage' });
    const raw = rawSettings({ prefix: 'exports/split' });

    const settlement = await deliver([nextHour, b, staging, a], raw);

    assert.equal(settlement.delivered, 4);
    assert.equal(settlement.requests, 3);
    const keys = await listKeys('exports/split/');
    const id = (items: Impression[]) => s3BatchId(items.map((item) => item.id));
    assert.deepEqual(
      keys,
      [
        `exports/split/env=env-prod/dt=2024-06-20/hour=16/${id([a, b])}.jsonl.gz`,
        `exports/split/env=env-prod/dt=2024-06-20/hour=17/${id([nextHour])}.jsonl.gz`,
        `exports/split/env=env-stage/dt=2024-06-20/hour=16/${id([staging])}.jsonl.gz`,
      ].sort(),
    );
    for (const key of keys) assert.match(key, /^exports\/split\/env=[^/]+\/dt=\d{4}-\d{2}-\d{2}\/hour=\d{2}\/[0-9a-f]{32}\.jsonl\.gz$/);

    const object = await readObject(`exports/split/env=env-prod/dt=2024-06-20/hour=16/${id([a, b])}.jsonl.gz`);
    assert.equal(object.contentType, 'application/gzip');
    const lines = gunzipSync(object.body).toString('utf8').split('\n');
    assert.equal(lines.pop(), '', 'every line ends with a newline');
    const rows = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.deepEqual(rows, [
      {
        key: a.key,
        bucketingKey: 'account-7',
        label: 'default rule',
        treatment: 'on',
        splitName: 'new_checkout',
        splitVersion: 1_718_800_000_000,
        properties: '{"plan":"pro"}',
        environmentId: 'env-prod',
        trafficTypeId: 'tt-1',
        sdk: 'nodejs',
        sdkVersion: '11.11.0',
        machineName: 'web-1',
        machineIp: '10.0.0.5',
        timestamp: a.time,
        receptionTimestamp: 1_718_900_001_000,
        impressionId: a.id,
      },
      {
        key: b.key,
        bucketingKey: null,
        label: null,
        treatment: 'on',
        splitName: 'new_checkout',
        splitVersion: 1_718_800_000_000,
        properties: null,
        environmentId: 'env-prod',
        trafficTypeId: null,
        sdk: null,
        sdkVersion: null,
        machineName: null,
        machineIp: null,
        timestamp: b.time,
        receptionTimestamp: 1_718_900_001_000,
        impressionId: b.id,
      },
    ]);
    assert.deepEqual(Object.keys(rows[0] ?? {}), [...s3Columns]);
  });

  test('writes CSV with a header row and RFC 4180 quoting', async () => {
    const tricky = impression({ key: 'user, "the first"', label: 'rule\nwith newline', properties: '{"plan":"pro"}' });
    const plain = impression();
    const raw = rawSettings({ format: 'csv', compression: 'none' });

    const settlement = await deliver([tricky, plain], raw);

    assert.equal(settlement.delivered, 2);
    const [key] = await listKeys(String(raw.prefix));
    assert.equal(key, `${String(raw.prefix)}env=env-prod/dt=2024-06-20/hour=16/${s3BatchId([tricky.id, plain.id])}.csv`);
    const object = await readObject(key ?? '');
    assert.equal(object.contentType, 'text/csv; charset=utf-8');
    assert.equal(
      object.body.toString('utf8'),
      [
        s3Columns.join(','),
        `"user, ""the first""",,"rule\nwith newline",on,new_checkout,1718800000000,"{""plan"":""pro""}",env-prod,,,,,,${tricky.time},1718900001000,${tricky.id}`,
        `${plain.key},,default rule,on,new_checkout,1718800000000,,env-prod,,,,,,${plain.time},1718900001000,${plain.id}`,
        '',
      ].join('\r\n'),
    );
  });

  test('writes Parquet with Split’s columns and types, readable back', async () => {
    const a = impression({ bucketingKey: 'account-7', machineIp: '10.0.0.5' });
    const b = impression({ splitVersionNumber: undefined });
    const raw = rawSettings({ format: 'parquet' });

    const settlement = await deliver([a, b], raw);

    assert.equal(settlement.delivered, 2);
    const [key] = await listKeys(String(raw.prefix));
    assert.match(key ?? '', /\/hour=16\/[0-9a-f]{32}\.parquet$/);
    const object = await readObject(key ?? '');
    assert.equal(object.contentType, 'application/vnd.apache.parquet');
    const file = new Uint8Array(object.body).buffer;
    const metadata = parquetMetadata(file);
    const schema = parquetSchema(metadata);
    assert.deepEqual(schema.children.map((column) => column.element.name), [...s3Columns]);
    const types = Object.fromEntries(schema.children.map((column) => [column.element.name, column.element.type]));
    assert.equal(types.splitVersion, 'INT64');
    assert.equal(types.timestamp, 'INT64');
    assert.equal(types.receptionTimestamp, 'INT64');
    assert.equal(types.key, 'BYTE_ARRAY');
    assert.deepEqual(new Set(metadata.row_groups.flatMap((group) => group.columns.map((column) => column.meta_data?.codec))), new Set(['GZIP']));

    const rows = await parquetReadObjects({ file, compressors: { GZIP: (input) => new Uint8Array(gunzipSync(input)) } });
    assert.deepEqual(
      rows.map((row) => [row.key, row.bucketingKey, row.splitName, row.splitVersion, row.machineIp, row.timestamp, row.impressionId]),
      [
        [a.key, 'account-7', 'new_checkout', 1_718_800_000_000n, '10.0.0.5', BigInt(a.time), a.id],
        [b.key, null, 'new_checkout', null, null, BigInt(b.time), b.id],
      ],
    );
  });

  test('a batch over maxRows is split into objects of at most maxRows rows', async () => {
    const items = Array.from({ length: 5 }, () => impression());
    const raw = rawSettings({ maxRows: 2 });

    const settlement = await deliver(items, raw);

    assert.equal(settlement.delivered, 5);
    assert.equal(settlement.requests, 3);
    const keys = await listKeys(String(raw.prefix));
    assert.equal(keys.length, 3);
    const rows = await Promise.all(keys.map(async (key) => gunzipSync((await readObject(key)).body).toString('utf8').trim().split('\n').length));
    assert.deepEqual(rows.sort(), [1, 2, 2]);
  });

  test('a retried batch overwrites its object instead of adding one', async () => {
    const items = [impression(), impression(), impression()];
    const raw = rawSettings();

    const first = await deliver(items, raw);
    const retry = await deliver([...items].reverse(), raw);

    assert.equal(first.delivered, 3);
    assert.equal(retry.delivered, 3);
    const keys = await listKeys(String(raw.prefix));
    assert.equal(keys.length, 1);
    const lines = gunzipSync((await readObject(keys[0] ?? '')).body).toString('utf8').trim().split('\n');
    assert.equal(lines.length, 3);
  });

  test('an impression the encode thread cannot write is dead-lettered alone; its neighbours are written', async () => {
    const first = impression();
    const second = impression();
    const third = impression();
    // Parquet stores splitVersion as INT64: a fraction makes the encoder throw, in the thread.
    const fraction = impression({ splitVersionNumber: 1.5 });
    const raw = rawSettings({ format: 'parquet' });

    const settlement = await deliver([first, fraction, second, third], raw);

    assert.equal(settlement.delivered, 3);
    assert.deepEqual(
      settlement.rejected.map((rejected) => [rejected.item.id, rejected.code]),
      [[fraction.id, 'invalid_payload']],
    );
    assert.match(settlement.rejected[0]?.reason ?? '', /^the connector cannot encode this impression: .*BigInt/);
    // The core halves the batch until the impression is alone: its neighbours go out in two objects.
    const partition = `${String(raw.prefix)}env=env-prod/dt=2024-06-20/hour=16/`;
    assert.deepEqual(await listKeys(String(raw.prefix)), [`${partition}${s3BatchId([first.id])}.parquet`, `${partition}${s3BatchId([second.id, third.id])}.parquet`].sort());
  });

  test('a missing bucket dead-letters the batch as destination_not_found', async () => {
    const items = [impression(), impression()];

    const settlement = await deliver(items, rawSettings({ bucket: 'no-such-bucket' }));

    assert.equal(settlement.delivered, 0);
    assert.equal(settlement.pending.length, 0);
    assert.deepEqual(settlement.rejected.map((r) => [r.item.id, r.code, r.status]), items.map((item) => [item.id, 'destination_not_found', 404]));
    assert.match(settlement.rejected[0]?.reason ?? '', /NoSuchBucket/);
  });

  test('an unknown access key dead-letters the batch as destination_auth', async () => {
    const settlement = await deliver([impression()], rawSettings({ accessKeyId: 'NOT-A-KEY' }));

    assert.equal(settlement.rejected[0]?.code, 'destination_auth');
    assert.match(settlement.rejected[0]?.reason ?? '', /InvalidAccessKeyId/);
  });

  test('a store that refuses connections leaves the batch pending for a retry', async () => {
    // A port that was just free: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = probe.address() as AddressInfo;
        probe.close(() => resolve(free));
      });
    });
    const items = [impression()];

    const settlement = await deliver(items, rawSettings({ endpoint: `http://127.0.0.1:${port}` }));

    assert.deepEqual(settlement.pending.map((item) => item.id), [items[0]?.id]);
    assert.match(settlement.lastFailure?.reason ?? '', /ECONNREFUSED/);
  });

  test('an endpoint the destination guard refuses is dead-lettered as destination_not_allowed', async () => {
    const strict = createHttpTransport({ guard: createDestinationGuard([]), userAgent: 'test' });
    try {
      const settlement = await deliverThrough(s3Connector, rawSettings(), [impression()], strict, 's3-test');
      assert.equal(settlement.rejected[0]?.code, 'destination_not_allowed');
    } finally {
      strict.close();
    }
  });
});

/** An S3 REST error body, as documented ("Error responses", Amazon S3 API Reference). */
function s3Error(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>4442587FB7D0A2F9</RequestId><HostId>host-id</HostId></Error>`;
}

describe('s3 connector against AWS S3 (nock)', () => {
  const transport = createHttpTransport({ guard: createDestinationGuard([]), userAgent: 'test' });
  const origin = 'https://acme-impressions.s3.eu-west-1.amazonaws.com';

  function deliver(items: readonly Impression[]): Promise<BatchSettlement> {
    const settings = { bucket: 'acme-impressions', prefix: 'exports', region: 'eu-west-1', accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'secret' };
    return deliverThrough(s3Connector, settings, items, transport, 's3-aws');
  }

  before(() => {
    nock.disableNetConnect();
  });
  after(() => {
    nock.cleanAll();
    nock.enableNetConnect();
    transport.close();
  });

  test('PUTs a signed object to the bucket’s virtual-hosted regional endpoint', async () => {
    const items = [impression(), impression()];
    const key = `exports/env=env-prod/dt=2024-06-20/hour=16/${s3BatchId(items.map((item) => item.id))}.jsonl.gz`;
    let headers: Record<string, string | string[] | undefined> = {};
    const scope = nock(origin)
      .put(`/${key.replace(/=/g, '%3D')}`)
      .query({ 'x-id': 'PutObject' })
      .reply(function () {
        headers = { ...this.req.headers };
        return [200, '', { ETag: '"d41d8cd98f00b204e9800998ecf8427e"' }];
      });

    const settlement = await deliver(items);

    scope.done();
    assert.equal(settlement.delivered, 2);
    assert.match(String(headers.authorization), /^AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE\/\d{8}\/eu-west-1\/s3\/aws4_request/);
    assert.equal(headers['content-type'], 'application/gzip');
    assert.ok(headers['x-amz-checksum-crc32'] !== undefined, 'AWS S3 gets the default integrity checksum');
  });

  test('503 SlowDown throttles, 500 InternalError retries, 403 AccessDenied dead-letters as destination_auth', async () => {
    const cases = [
      { status: 503, code: 'SlowDown', message: 'Please reduce your request rate.', expect: (s: BatchSettlement) => assert.equal(s.throttled, true) },
      { status: 500, code: 'InternalError', message: 'We encountered an internal error. Please try again.', expect: (s: BatchSettlement) => assert.equal(s.pending.length, 1) },
      { status: 403, code: 'AccessDenied', message: 'Access Denied', expect: (s: BatchSettlement) => assert.equal(s.rejected[0]?.code, 'destination_auth') },
    ];
    for (const { status, code, message, expect } of cases) {
      const scope = nock(origin).put(/^\/exports\//).query(true).reply(status, s3Error(code, message), { 'Content-Type': 'application/xml' });

      const settlement = await deliver([impression()]);

      scope.done();
      expect(settlement);
      assert.equal(settlement.lastFailure?.status, status);
      assert.match(settlement.lastFailure?.reason ?? '', new RegExp(`S3 ${status} ${code}: ${message}`));
    }
  });
});

describe('s3 connector settings and classification', () => {
  const sent: EncodedRequest<S3PutRequest> = { itemIds: ['a'], bytes: 1, request: { bucket, key: 'k', body: new Uint8Array(1), contentType: 'application/gzip', rows: 1 } };
  const answer = (response: Omit<S3PutResponse, 'key'>): SendResult<S3PutResponse> => ({ ok: true, response: { key: 'k', ...response } });

  test('maps S3 error codes and statuses to outcomes', () => {
    assert.equal(classifyS3Result(answer({ status: 200 })).kind, 'delivered');
    assert.deepEqual(classifyS3Result(answer({ status: 503, errorCode: 'SlowDown', message: 'Please reduce your request rate.' })), {
      kind: 'throttled',
      reason: 'S3 503 SlowDown: Please reduce your request rate. (k)',
      status: 503,
    });
    assert.equal(classifyS3Result(answer({ status: 500, errorCode: 'InternalError' })).kind, 'retry');
    assert.equal(classifyS3Result(answer({ status: 502 })).kind, 'retry');
    assert.equal(classifyS3Result(answer({ status: 403, errorCode: 'RequestTimeTooSkewed' })).kind, 'retry');
    for (const errorCode of ['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch']) {
      assert.deepEqual(classifyS3Result(answer({ status: 403, errorCode })), { kind: 'rejected', code: 'destination_auth', reason: `S3 403 ${errorCode} (k)`, status: 403 });
    }
    assert.equal(classifyS3Result(answer({ status: 400, errorCode: 'EntityTooLarge' })).kind, 'too-large');
    assert.deepEqual(classifyS3Result(answer({ status: 400, errorCode: 'InvalidArgument' })), { kind: 'rejected', code: 'invalid_payload', reason: 'S3 400 InvalidArgument (k)', status: 400 });
    assert.equal(classifyS3Result({ ok: false, error: { code: 'ETIMEDOUT', message: 'request timed out' } }).kind, 'retry');
    assert.equal(s3Connector.classify({ ok: false, error: { code: 'DESTINATION_NOT_ALLOWED', message: 'private' } }, sent).kind, 'rejected');
  });

  test('declares its limits from the settings', () => {
    const settings = s3Connector.settingsSchema.parse({ bucket, maxRows: 1000, maxWait: 60_000 });
    const limits = s3Connector.limits(settings);
    assert.equal(limits.maxItemsPerRequest, 1000);
    assert.equal(limits.maxBatchWaitMs, 60_000);
    assert.equal(limits.maxBytesPerRequest, 5 * 1024 ** 3);
    const defaults = s3Connector.limits(s3Connector.settingsSchema.parse({ bucket }));
    assert.equal(defaults.maxItemsPerRequest, 50_000);
    assert.equal(defaults.maxBatchWaitMs, 300_000);
  });

  test('takes both keys or neither, and rejects path tricks in the prefix', () => {
    assert.equal(s3Connector.settingsSchema.safeParse({ bucket, accessKeyId: 'AKIA' }).success, false);
    assert.equal(s3Connector.settingsSchema.safeParse({ bucket, sessionToken: 'token' }).success, false);
    assert.equal(s3Connector.settingsSchema.safeParse({ bucket, prefix: 'a/../b' }).success, false);
    const leadingSlash = s3Connector.settingsSchema.parse({ bucket, prefix: '/exports' });
    assert.match(s3Connector.encode([impression()], leadingSlash, { now, destinationId: 'd' }).requests[0]?.request.key ?? '', /^exports\/env=env-prod\//);
    assert.equal(s3Connector.settingsSchema.safeParse(s3Connector.exampleSettings).success, true);
  });

  test('the object key depends only on which impressions it holds', () => {
    const settings = s3Connector.settingsSchema.parse({ bucket, prefix: 'p' });
    const items = [impression(), impression(), impression({ environmentId: 'env/with space' })];
    const context = { now, destinationId: 'd' };
    const once = s3Connector.encode(items, settings, context).requests.map((r) => r.request.key);
    const again = s3Connector.encode([...items].reverse(), settings, { ...context, now: now + 60_000 }).requests.map((r) => r.request.key);
    assert.deepEqual([...again].sort(), [...once].sort());
    assert.ok(once.some((key) => key.startsWith('p/env=env%2Fwith%20space/dt=2024-06-20/hour=16/')));
  });
});
