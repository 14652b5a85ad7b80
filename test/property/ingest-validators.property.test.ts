import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { AppError } from '../../src/domain/errors.js';
import type { Impression } from '../../src/domain/impression.js';
import { decodeStoredBatch, encodeStoredBatch } from '../../src/domain/stored-batch.js';
import type { IngestContext } from '../../src/ingest/formats/ingest-context.js';
import { fromNativeJson } from '../../src/ingest/formats/native-json.js';
import { fromSplitSdkBulk, type SplitSdkHeaders } from '../../src/ingest/formats/split-sdk-bulk.js';
import { fromSplitWebhook } from '../../src/ingest/formats/split-webhook.js';
import { referenceNativeJson, referenceSplitSdkBulk, referenceSplitWebhook } from '../helpers/zod-ingest-reference.js';

/**
 * The impression formats are validated by hand on the hot path (src/ingest/field-checks.ts);
 * their zod schemas, which document them, were the validators before. On generated bodies (valid,
 * and invalid in every way a field can be: type, length, code points, number boundaries, nesting,
 * surrogates, missing, null, whole elements replaced) the hand-written path must give exactly what
 * the zod path (test/helpers/zod-ingest-reference.ts, the code as it was) gives: the same
 * impressions, field for field and in the same key order, or the same error, down to every
 * problem's field, message and order.
 *
 * The seed is fixed so a run is repeatable; FC_SEED=<n> explores another part of the space.
 */
const seed = Number(process.env.FC_SEED ?? 20_260_517);
const runs = (numRuns: number) => ({ numRuns, seed, includeErrorInReport: true });

const now = 1_800_000_000_000;
const context: IngestContext = { environmentId: 'env-d', environmentName: 'Diff', receivedAt: now };
const minTime = Date.UTC(2000, 0, 1);
const latestTime = now + 3_600_000;

type Outcome =
  | { readonly accepted: readonly Impression[]; readonly stored: string }
  | { readonly refused: { readonly status: number; readonly code: string; readonly message: string; readonly field: string | undefined; readonly details: unknown } };

function outcome(run: () => Impression[]): Outcome {
  try {
    const impressions = run();
    // What the rest of the pipeline sees of them: the stored batch (fields by name, in its own order).
    return { accepted: impressions, stored: JSON.stringify(decodeStoredBatch(encodeStoredBatch(impressions))) };
  } catch (error) {
    if (!(error instanceof AppError)) throw error;
    return { refused: { status: error.httpStatus, code: error.code, message: error.message, field: error.field, details: error.details } };
  }
}

/** Same outcome, with -0 told from 0 (deepStrictEqual), and the same stored batch. */
function assertSame(handWritten: Outcome, zod: Outcome): void {
  assert.deepStrictEqual(handWritten, zod);
}

// ——— Values ———

const absent = Symbol('absent');
type Maybe = unknown;

const loneSurrogate = fc.constantFrom('\ud800', '\udbff', '\udc00', '\udfff');
const goodText = fc.oneof(
  { weight: 10, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 10 }) },
  { weight: 1, arbitrary: fc.constantFrom('k'.repeat(1024), 'é'.repeat(1024), '😀'.repeat(512), 'NA', 'unknown', ' ', '\u0000', 'x'.repeat(1023) + '😀'.slice(0, 1)) },
);
const badText = fc.oneof(
  fc.integer({ min: 1025, max: 1027 }).map((n) => 'k'.repeat(n)),
  fc.constant('😀'.repeat(513)),
  fc.constant(''),
  fc.tuple(fc.string({ maxLength: 3 }), loneSurrogate).map(([text, lone]) => text + lone),
);
const wrongTypes: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant([]),
  fc.constant({}),
  fc.constant([['x']]),
  fc.constantFrom(Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN),
  fc.jsonValue({ maxDepth: 2 }),
);
const boundaryNumbers = [
  0, -0, 1, -1, 0.5, -0.5, 1e-300, 100, 9_007_199_254_740_991, -9_007_199_254_740_991, 9_007_199_254_740_992, -9_007_199_254_740_992, 1e16, -1e16, 1e21, -1e21,
  1.7976931348623157e308, -1.7976931348623157e308, 8_640_000_000_000_000, 8_640_000_000_000_001, minTime - 1, minTime, minTime + 0.5, latestTime, latestTime + 1,
  latestTime + 0.5, Math.floor(now / 1000), Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN,
];
const badNumber: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...boundaryNumbers) },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.constantFrom(`${now}`, 'NaN', '1', true, null, [], {}, [1]) },
);
const goodTime = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: minTime, max: latestTime }) }, { weight: 1, arbitrary: fc.constantFrom(minTime, latestTime, now) });
const goodChangeNumber = fc.oneof(fc.integer(), fc.constantFrom(2 ** 53 - 1, -(2 ** 53 - 1), 0, -0, 1_718_800_000_000), fc.maxSafeInteger());

const nested = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
const flat = fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(goodText, fc.integer(), fc.boolean(), fc.constant(null), fc.double()), { maxKeys: 5 });
const goodPropertiesText = fc.oneof(
  { weight: 4, arbitrary: flat.map((p) => JSON.stringify(p)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 16 }).map(nested) },
  { weight: 1, arbitrary: fc.constantFrom(JSON.stringify({ p: 'x'.repeat(32_760) }), '{"p":"\\ud83d\\ude00"}', 'not json', '[1,2]', '', '{}', '"\\\\ud800"') },
);
const badPropertiesText = fc.oneof(
  fc.integer({ min: 17, max: 40 }).map(nested),
  fc.integer({ min: 32_759, max: 32_761 }).map((n) => JSON.stringify({ p: 'x'.repeat(n) })),
  fc.constantFrom('{"p":"\\ud800"}', '{"p":"\\udc00x"}', '{"p":"\\ud800\\u0041"}', `{"p":"${'\ud800'}"}`, '\udfff', '[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]'),
);
const propertiesObject: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: flat },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 20 }).map((depth) => JSON.parse(nested(depth)) as unknown) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '{"__proto__":{"x":1},"a":1}',
      '{"a":1,"__proto__":2}',
      '{"constructor":{"prototype":{"x":1}}}',
      '{"2":1,"1":2,"b":3,"a":4}',
      '{"p":"\\ud800"}',
      '{"a":1,"a":2}',
      `{"p":"${'x'.repeat(32_760)}"}`,
      `{"p":"${'x'.repeat(32_762)}"}`,
    ).map((text) => JSON.parse(text) as unknown),
  },
);

/** A field: mostly a valid value; sometimes absent, null or invalid. */
function field(valid: fc.Arbitrary<unknown>, invalid: fc.Arbitrary<unknown>, optional: boolean): fc.Arbitrary<Maybe> {
  return fc.oneof(
    { weight: optional ? 24 : 60, arbitrary: valid },
    { weight: optional ? 24 : 1, arbitrary: fc.constant(absent) },
    { weight: 1, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: invalid },
  );
}
const text = (optional: boolean) => field(goodText, fc.oneof(badText, wrongTypes), optional);
const time = fc.oneof({ weight: 30, arbitrary: field(goodTime, badNumber, false) }, { weight: 1, arbitrary: fc.integer({ min: latestTime + 1, max: latestTime + 5 }) });
const changeNumber = field(goodChangeNumber, badNumber, true);

function record(fields: Record<string, fc.Arbitrary<Maybe>>): fc.Arbitrary<Record<string, unknown>> {
  return fc.record(fields).map((values) => Object.fromEntries(Object.entries(values).filter(([, value]) => value !== absent)));
}
/** Now and then something else entirely. */
const orAnything = <T>(arbitrary: fc.Arbitrary<T>): fc.Arbitrary<unknown> => fc.oneof({ weight: 12, arbitrary }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) });
const list = (item: fc.Arbitrary<unknown>, maxLength = 4, minLength = 0) => fc.array(orAnything(item), { minLength, maxLength });

// ——— Bodies ———

const sdkItem = record({
  k: text(false),
  t: text(false),
  m: time,
  c: changeNumber,
  r: text(true),
  b: text(true),
  pt: field(fc.oneof(goodTime, fc.double({ noNaN: true, noDefaultInfinity: true })), badNumber, true),
  properties: field(goodPropertiesText, fc.oneof(badPropertiesText, propertiesObject, wrongTypes), true),
  et: text(true),
  extra: field(fc.jsonValue({ maxDepth: 2 }), fc.constant(1), true),
});
const sdkBody = orAnything(list(record({ f: text(false), i: field(list(sdkItem, 5), wrongTypes, false) }), 3));
const header = fc.option(fc.oneof(fc.constantFrom('', 'NA', 'unknown', 'nodejs-11.11.0', '.NET_CORE-7.6.0', 'python', '-x', 'x-'), fc.integer({ min: 1023, max: 1025 }).map((n) => 'h'.repeat(n))), { nil: undefined, freq: 3 });
const sdkHeaders: fc.Arbitrary<SplitSdkHeaders> = fc.record({ sdkVersion: header, machineIp: header, machineName: header });

const propertiesInput = field(fc.oneof(goodPropertiesText, propertiesObject), fc.oneof(badPropertiesText, wrongTypes), true);
const webhookText = ['environmentId', 'environmentName', 'bucketingKey', 'label', 'machineName', 'machineIp', 'sdk', 'sdkVersion', 'trafficTypeId', 'trafficTypeName'];
const webhookItem = record({
  key: text(false),
  split: text(false),
  treatment: text(false),
  time,
  ...Object.fromEntries(webhookText.map((name) => [name, text(true)])),
  splitVersionNumber: changeNumber,
  properties: propertiesInput,
});
const webhookBody = orAnything(list(webhookItem, 5));

const clientId = fc.oneof(
  { weight: 4, arbitrary: goodText },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '',
      'i'.repeat(128),
      'i'.repeat(129),
      '😀'.repeat(64),
      '😀'.repeat(65),
      '😀'.repeat(128),
      '😀'.repeat(129),
      `${'a'.repeat(127)}😀`,
      `${'a'.repeat(128)}😀`,
      '\ud800'.repeat(129),
      `${'a'.repeat(127)}\udc00\ud800`,
      `${'a'.repeat(126)}\ud83d\ude00\ud800`,
    ),
  },
);
const nativeText = ['bucketingKey', 'label', 'trafficTypeId', 'trafficTypeName', 'sdk', 'sdkVersion', 'machineIp', 'machineName'];
const nativeItem = record({
  id: field(clientId, wrongTypes, true),
  key: text(false),
  split: text(false),
  treatment: text(false),
  time,
  ...Object.fromEntries(nativeText.map((name) => [name, text(true)])),
  splitVersionNumber: changeNumber,
  properties: propertiesInput,
  environmentId: field(goodText, wrongTypes, true),
});
const nativeBody = orAnything(
  fc.oneof(
    { weight: 8, arbitrary: record({ impressions: field(list(nativeItem, 5, 1), wrongTypes, false), other: field(fc.jsonValue({ maxDepth: 1 }), fc.constant(1), true) }) },
    { weight: 1, arbitrary: fc.constant({ impressions: [] }) },
  ),
);

describe('the hand-written impression validators answer exactly as the zod schemas did', () => {
  const tally = (name: string, outcomes: Outcome[], t: { diagnostic: (message: string) => void }) => {
    const accepted = outcomes.filter((o) => 'accepted' in o).length;
    const late = outcomes.filter((o) => 'refused' in o && /after reception/.test(o.refused.message)).length;
    t.diagnostic(`${name}: ${accepted} accepted, ${outcomes.length - accepted} refused (${late} for a time after reception)`);
    // Both sides of the comparison were exercised, the reception bound too.
    assert.ok(accepted > outcomes.length / 10 && outcomes.length - accepted > outcomes.length / 10 && late > 0, `${accepted} of ${outcomes.length}, ${late} late`);
  };

  test('Split SDK bulk (/api/testImpressions/bulk), with its headers', (t) => {
    const outcomes: Outcome[] = [];
    fc.assert(
      fc.property(sdkBody, sdkHeaders, (body, headers) => {
        const zod = outcome(() => referenceSplitSdkBulk(body, headers, context));
        assertSame(outcome(() => fromSplitSdkBulk(body, headers, context)), zod);
        outcomes.push(zod);
      }),
      runs(3000),
    );
    tally('sdk bulk', outcomes, t);
  });

  test('Split webhook', (t) => {
    const outcomes: Outcome[] = [];
    fc.assert(
      fc.property(webhookBody, (body) => {
        const zod = outcome(() => referenceSplitWebhook(body, context));
        assertSame(outcome(() => fromSplitWebhook(body, context)), zod);
        outcomes.push(zod);
      }),
      runs(3000),
    );
    tally('webhook', outcomes, t);
  });

  test('native JSON (/v1/impressions)', (t) => {
    const outcomes: Outcome[] = [];
    fc.assert(
      fc.property(nativeBody, (body) => {
        const zod = outcome(() => referenceNativeJson(body, context));
        assertSame(outcome(() => fromNativeJson(body, context)), zod);
        outcomes.push(zod);
      }),
      runs(3000),
    );
    tally('native', outcomes, t);
  });

  test('the boundaries, written out, answer alike too', () => {
    const item = { k: 'u', t: 'on', m: now };
    const sdkCases: unknown[] = [
      undefined,
      null,
      {},
      [],
      [null],
      [{}],
      [{ f: 'flag' }],
      [{ f: '', i: {} }],
      [{ f: 'flag', i: [item, { ...item, t: undefined }, 1] }],
      // A fraction stops at "integer"; an unsafe negative integer is also before 2000.
      ...[0.5, -0.5, 1e16, -1e16, -9_007_199_254_740_992, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, minTime - 1, latestTime + 1, '1'].map((m) => [{ f: 'flag', i: [{ ...item, m }] }]),
      ...[0.5, 1e16, -1e16, -0, null, Number.POSITIVE_INFINITY].map((c) => [{ f: 'flag', i: [{ ...item, c }] }]),
      ...[Number.POSITIVE_INFINITY, 'x', null, -0].map((pt) => [{ f: 'flag', i: [{ ...item, pt }] }]),
      ...['', nested(17), nested(16), { a: 1 }, 1, 'x'.repeat(32_769)].map((properties) => [{ f: 'flag', i: [{ ...item, properties }] }]),
    ];
    for (const body of sdkCases) {
      assertSame(outcome(() => fromSplitSdkBulk(body, {}, context)), outcome(() => referenceSplitSdkBulk(body, {}, context)));
      const headers = { sdkVersion: 'v'.repeat(1025), machineIp: 'NA', machineName: 'm'.repeat(1025) };
      assertSame(outcome(() => fromSplitSdkBulk(body, headers, context)), outcome(() => referenceSplitSdkBulk(body, headers, context)));
    }
    const hook = { key: 'u', split: 'f', treatment: 'on', time: now };
    for (const properties of ['', '{}', {}, [], null, 1, { __proto__: null, a: 1 }, JSON.parse('{"__proto__":1,"b":2}') as unknown]) {
      const body = [{ ...hook, properties }];
      assertSame(outcome(() => fromSplitWebhook(body, context)), outcome(() => referenceSplitWebhook(body, context)));
      const native = { impressions: [{ ...hook, properties }] };
      assertSame(outcome(() => fromNativeJson(native, context)), outcome(() => referenceNativeJson(native, context)));
    }
    // zod runs min() and max() even after a failed type check, on whatever has a `length`.
    const withLength = [[], [1], Array.from({ length: 129 }, () => 1), { length: 0 }, { length: 'x' }, { length: '5' }, { length: null }, { length: 200 }, { length: [5] }, '', 'ab'];
    for (const value of withLength) {
      const sdk = [{ f: value, i: [{ ...item, k: value, t: value }] }];
      assertSame(outcome(() => fromSplitSdkBulk(sdk, {}, context)), outcome(() => referenceSplitSdkBulk(sdk, {}, context)));
      const webhook = [{ ...hook, key: value, split: value, treatment: value, label: value }];
      assertSame(outcome(() => fromSplitWebhook(webhook, context)), outcome(() => referenceSplitWebhook(webhook, context)));
      for (const native of [{ impressions: value }, { impressions: [{ ...hook, id: value, key: value }] }]) {
        assertSame(outcome(() => fromNativeJson(native, context)), outcome(() => referenceNativeJson(native, context)));
      }
    }
    for (const body of [null, [], 'x', {}, { impressions: {} }, { impressions: [] }, { impressions: [null] }, { impressions: [{ ...hook, bucketingKey: null }] }]) {
      assertSame(outcome(() => fromNativeJson(body, context)), outcome(() => referenceNativeJson(body, context)));
    }
  });
});
