import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Impression } from '../../src/domain/impression.js';
import { ImpressionJsonWriter, impressionJsonAt } from '../../src/domain/impression-json.js';
import { applyView, type DecodedBatch, decodeStoredBatch, encodeStoredBatch, impressionAt, type RoutingView } from '../../src/domain/stored-batch.js';

/**
 * The row writer against its definition: for every row of every generated batch, under every
 * view, impressionJsonAt writes exactly the bytes of JSON.stringify(impressionAt(…)). Batches go
 * through encodeStoredBatch and back, so contexts are shared or left in the rows' own objects as
 * ingest leaves them; hand-made rows cover what encodeStoredBatch never writes (the fallback).
 *
 * The seed is fixed so a run is repeatable; FC_SEED=<n> explores another part of the space.
 */
const seed = Number(process.env.FC_SEED ?? 20_261_125);
const runs = (numRuns: number) => ({ numRuns, seed, includeErrorInReport: true });

// Unicode of every kind: escapes, control characters, lone and paired surrogates, non-ASCII.
const text = fc.oneof(
  fc.string({ minLength: 1, maxLength: 12 }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }),
  fc.constantFrom('on', 'off', 'a"b', 'back\\slash', 'line\nbreak', '\u0000\u001f', '\ud800', 'x\udc00y', '😀', 'é', '\u2028\u2029', '</script>'),
);
const maybe = <T>(arbitrary: fc.Arbitrary<T>) => fc.option(arbitrary, { nil: undefined, freq: 2 });
const flags = ['flag_a', 'flag_b', 'flag_c', '__proto__', 'constructor'] as const;
const properties = fc.oneof(fc.json(), fc.constant('{"plan":"gold","seats":3,"nested":{"a":[1,null,"\\u00e9"]}}'));

const impressionArbitrary = fc.record({
  id: text,
  key: text,
  split: fc.oneof(fc.constantFrom(...flags), text),
  treatment: text,
  time: fc.integer({ min: 0, max: 4_102_444_800_000 }),
  splitVersionNumber: maybe(fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 })),
  label: maybe(text),
  bucketingKey: maybe(text),
  properties: maybe(properties),
  trafficTypeName: maybe(text),
  trafficTypeId: maybe(text),
  environmentId: fc.constantFrom('env-1', 'env-2'),
  environmentName: maybe(fc.constantFrom('Production', 'Staging "β"')),
  sdk: maybe(fc.constantFrom('nodejs', 'go', 'sdk\u0001')),
  sdkVersion: maybe(fc.constantFrom('11.11.0', '6.1.0')),
  machineIp: maybe(fc.constantFrom('10.0.0.1', '10.0.0.2')),
  machineName: maybe(fc.constantFrom('host-1', 'hôte-2')),
  receptionTimestamp: fc.constantFrom(1_800_000_000_000, 1_800_000_000_001),
});

/** Undefined fields left out, as ingest leaves them. */
function withoutUndefined(impression: Record<string, unknown>): Impression {
  return Object.fromEntries(Object.entries(impression).filter(([, value]) => value !== undefined)) as unknown as Impression;
}

/** A batch's impressions: all alike in their context, or varied (the rows then carry their own). */
const batchArbitrary = fc.oneof(
  fc.array(impressionArbitrary, { minLength: 1, maxLength: 12 }),
  impressionArbitrary.chain((first) => fc.array(impressionArbitrary.map((impression) => ({ ...impression, environmentId: first.environmentId, sdk: first.sdk, machineIp: first.machineIp })), { minLength: 1, maxLength: 12 })),
);

const trafficType = fc.oneof(
  text.map((name): readonly [string] => [name]),
  fc.tuple(text, text).map(([name, id]): readonly [string, string] => [name, id]),
);
const viewArbitrary: fc.Arbitrary<RoutingView | undefined> = fc.option(
  fc.record({ labels: fc.boolean(), trafficTypes: fc.dictionary(fc.constantFrom(...flags), trafficType, { maxKeys: 4 }) }),
  { nil: undefined, freq: 4 },
);

function assertSameBytes(batch: DecodedBatch, view: RoutingView | undefined): void {
  for (let row = 0; row < batch.rows.length; row += 1) {
    assert.equal(impressionJsonAt(batch, row, view), JSON.stringify(impressionAt(batch, row, view)), `row ${row} of ${JSON.stringify(batch.rows[row])}, context ${JSON.stringify(batch.context)}`);
  }
}

describe('impressionJsonAt', () => {
  test('writes the bytes of JSON.stringify(impressionAt) for rows as ingest stores them, under every view', () => {
    fc.assert(
      fc.property(batchArbitrary, viewArbitrary, (impressions, view) => {
        assertSameBytes(decodeStoredBatch(encodeStoredBatch(impressions.map(withoutUndefined))), view);
      }),
      runs(500),
    );
  });

  test('one writer, many rows and inline text: the bytes of Buffer.from(JSON.stringify(array))', () => {
    fc.assert(
      fc.property(batchArbitrary, viewArbitrary, fc.array(fc.nat(), { maxLength: 30 }), impressionArbitrary, (impressions, view, picks, inline) => {
        const batch = decodeStoredBatch(encodeStoredBatch(impressions.map(withoutUndefined)));
        const rows = picks.map((pick) => pick % batch.rows.length);
        // A small first buffer, so that it grows mid-row.
        const writer = new ImpressionJsonWriter(16);
        writer.byte(0x5b);
        writer.text(JSON.stringify(withoutUndefined(inline)));
        for (const row of rows) {
          writer.byte(0x2c);
          assert.equal(writer.row(batch, row, view), true);
        }
        writer.byte(0x5d);
        const expected = Buffer.from(JSON.stringify([withoutUndefined(inline), ...rows.map((row) => impressionAt(batch, row, view))]));
        assert.equal(writer.byteLength, expected.byteLength);
        assert.deepEqual(writer.take(), expected);
        assert.equal(writer.byteLength, 0);
        assert.equal(writer.row(batch, batch.rows.length, view), false);
      }),
      runs(300),
    );
  });

  test('impressionAt under a view is applyView of the plain impression (the writer\'s reference is itself right)', () => {
    fc.assert(
      fc.property(batchArbitrary, viewArbitrary, (impressions, view) => {
        const batch = decodeStoredBatch(encodeStoredBatch(impressions.map(withoutUndefined)));
        for (let row = 0; row < batch.rows.length; row += 1) {
          const plain = impressionAt(batch, row) as Impression;
          const trafficType = view === undefined || !Object.hasOwn(view.trafficTypes, plain.split) ? undefined : view.trafficTypes[plain.split];
          assert.deepEqual(impressionAt(batch, row, view), view === undefined ? plain : applyView(plain, view.labels, trafficType));
        }
      }),
      runs(300),
    );
  });

  test('both contexts occur: shared by every row, and partly in the rows own objects', () => {
    const shared = decodeStoredBatch(encodeStoredBatch([withoutUndefined({ id: 'a', key: 'k', split: 'f', treatment: 'on', time: 1, environmentId: 'e', sdk: 'go', receptionTimestamp: 2 })]));
    assert.equal(shared.rows[0]?.length, 5);
    const unshared = decodeStoredBatch(
      encodeStoredBatch([
        withoutUndefined({ id: 'a', key: 'k', split: 'f', treatment: 'on', time: 1, environmentId: 'e', sdk: 'go', receptionTimestamp: 2 }),
        withoutUndefined({ id: 'b', key: 'k', split: 'f', treatment: 'on', time: 1, environmentId: 'e', sdk: 'nodejs', machineIp: '10.0.0.1', receptionTimestamp: 2 }),
      ]),
    );
    assert.deepEqual(unshared.rows[1]?.at(-1), { sdk: 'nodejs', machineIp: '10.0.0.1' });
    const view: RoutingView = { labels: false, trafficTypes: { f: ['user', 'tt-1'] } };
    assertSameBytes(shared, view);
    assertSameBytes(unshared, view);
    assert.equal(impressionJsonAt(unshared, 1, view), '{"id":"b","key":"k","split":"f","treatment":"on","time":1,"environmentId":"e","receptionTimestamp":2,"sdk":"nodejs","machineIp":"10.0.0.1","trafficTypeName":"user","trafficTypeId":"tt-1"}');
    assert.equal(impressionJsonAt(unshared, 2, view), undefined);
  });

  test('rows ingest never writes (own objects that collide, are not objects, odd values) still give the same bytes', () => {
    const value = fc.oneof(text, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.json().map((json): unknown => JSON.parse(json)));
    const own = fc.oneof(
      fc.constant(null),
      fc.dictionary(fc.constantFrom('sdk', 'machineIp', 'environmentId', 'label', 'id', '__proto__', '0'), value, { maxKeys: 3 }),
      fc.array(value, { maxLength: 2 }),
      text,
      fc.integer(),
    );
    const row = fc.oneof(
      fc.tuple(fc.array(value, { minLength: 11, maxLength: 11 }), own).map(([fields, trailing]) => [...fields, trailing]),
      fc.array(value, { maxLength: 11 }),
    );
    const context = fc.oneof(
      fc.dictionary(fc.constantFrom('environmentId', 'sdk', 'machineName', 'receptionTimestamp'), value, { maxKeys: 3 }),
      fc.dictionary(fc.constantFrom('environmentId', 'label', 'split', '1'), value, { maxKeys: 3 }),
    );
    fc.assert(
      fc.property(context, fc.array(row, { minLength: 1, maxLength: 6 }), viewArbitrary, (batchContext, rows, view) => {
        // Through JSON, as a stored batch is read: `__proto__` is then an own key, as JSON.parse makes it.
        const batch = decodeStoredBatchText(JSON.stringify({ v: 1, c: batchContext, r: rows }));
        assertSameBytes(batch, view);
      }),
      runs(500),
    );
  });
});

function decodeStoredBatchText(json: string): DecodedBatch {
  const parsed = JSON.parse(json) as { c: DecodedBatch['context']; r: unknown[][] };
  return { context: parsed.c, rows: parsed.r, bytes: json.length, storedBytes: 0 };
}
