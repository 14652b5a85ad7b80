import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { createConfigService } from '../../src/admin/config-service.js';
import { createDestinationGuard } from '../../src/delivery/destination-guard.js';
import { loadConfigFile } from '../../src/admin/load-config-file.js';
import { ConnectorRegistry } from '../../src/connectors/registry.js';
import { AppError } from '../../src/domain/errors.js';
import { createConfigStore } from '../../src/stores/config-store.js';
import { redisKeys } from '../../src/stores/redis-keys.js';
import { createSecretBox } from '../../src/stores/secret-box.js';
import { createTestRedis, deleteKeys, testRedisUrl, uniquePrefix } from '../helpers/redis.js';

/**
 * Issue 7: hostile input to `apply`. Whatever the document (random shapes and types, unicode,
 * huge numbers, deep nesting, keys such as __proto__, duplicate keys in the YAML text), apply
 * either accepts it whole or refuses it with a validation error that names fields, never a
 * crash, and a refused document changes nothing that is stored.
 */

const template = {
  environments: [
    {
      id: 'env-a',
      name: 'A',
      sdkKeys: ['key-a'],
      webhookToken: 'token-a',
      labelsEnabled: true,
      unknownFlags: 'track',
      flags: [{ name: 'flag_a', trafficType: 'user', trackImpressions: true }],
      destinations: [
        { id: 'hook-a', type: 'webhook', enabled: true, settings: { url: 'https://hooks.example.com/a', headers: { authorization: 'Bearer x' } }, filters: { flags: ['*'] }, delivery: { timeout: '5s', retrySchedule: ['1s', '1m'] } },
        { id: 'seg-a', type: 'segment', settings: { writeKey: 'wk', region: 'eu', batchSize: 100 } },
      ],
    },
    { id: 'env-b', sdkKeys: ['key-b'], destinations: [{ id: 's3-b', type: 's3', settings: { bucket: 'b', format: 'csv' } }] },
  ],
};

/** Every path of the template's JSON tree. */
function pathsOf(value: unknown, path: PropertyKey[] = []): PropertyKey[][] {
  const here = [path];
  if (Array.isArray(value)) return [...here, ...value.flatMap((item, index) => pathsOf(item, [...path, index]))];
  if (value !== null && typeof value === 'object') return [...here, ...Object.entries(value).flatMap(([key, item]) => pathsOf(item, [...path, key]))];
  return here;
}
const templatePaths = pathsOf(template).filter((p) => p.length > 0);

/** Sets an own property the way JSON.parse and YAML do, even for `__proto__`. */
function defineOwn(target: Record<PropertyKey, unknown>, key: PropertyKey, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function nested(depth: number): unknown {
  let value: unknown = 'bottom';
  for (let level = 0; level < depth; level += 1) value = level % 2 === 0 ? { a: value } : [value];
  return value;
}

const hostileKey = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'sdkKey', 'regoin', 'bachSize', 'labelsEnabld', '', ' ', '💥', 'id'),
);
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.anything({ maxDepth: 3, withNullPrototype: true, withSparseArray: true }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(Number.MAX_VALUE, -Number.MAX_VALUE, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN, 2 ** 53, 2 ** 31, -1, -0, 1e21, 0.5, '[redacted]', '1h30m', '5 minutes', '', null),
  fc.integer({ min: 30, max: 3000 }).map(nested),
  fc.dictionary(hostileKey, fc.anything({ maxDepth: 2 }), { maxKeys: 4 }),
);

type Mutation = { readonly path: number; readonly action: 'set' | 'delete' | 'add'; readonly key: PropertyKey; readonly value: unknown };
const mutation: fc.Arbitrary<Mutation> = fc.record({ path: fc.nat(), action: fc.constantFrom('set', 'delete', 'add'), key: hostileKey, value: hostileValue });

function mutate(mutations: readonly Mutation[]): unknown {
  const document = structuredClone(template) as Record<string, unknown>;
  for (const { path, action, key, value } of mutations) {
    const target = templatePaths[path % templatePaths.length] as PropertyKey[];
    let parent: unknown = document;
    for (const part of target.slice(0, -1)) parent = parent !== null && typeof parent === 'object' ? (parent as Record<PropertyKey, unknown>)[part] : undefined;
    if (parent === null || typeof parent !== 'object') continue;
    const last = target.at(-1) as PropertyKey;
    const holder = parent as Record<PropertyKey, unknown>;
    if (action === 'set') defineOwn(holder, last, value);
    else if (action === 'delete') delete holder[last];
    else {
      const child = holder[last];
      if (child !== null && typeof child === 'object' && !Array.isArray(child)) defineOwn(child as Record<PropertyKey, unknown>, key, value);
    }
  }
  return document;
}

/** Whole documents: mutated templates mostly, sometimes anything at all. */
const documents: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 4 }).map(mutate) },
  { weight: 1, arbitrary: fc.array(mutation, { minLength: 0, maxLength: 0 }).map(mutate) },
  { weight: 1, arbitrary: hostileValue },
  { weight: 1, arbitrary: fc.record({ environments: fc.array(hostileValue, { maxLength: 3 }) }) },
);

function assertClearRefusal(error: unknown): asserts error is AppError {
  assert.ok(error instanceof AppError, `a crash, not a validation error: ${error instanceof Error ? error.stack : String(error)}`);
  assert.ok(['FLAGSTREAM_ERR_VALIDATION', 'FLAGSTREAM_ERR_CONFLICT'].includes(error.code), `${error.code}: ${error.message}`);
  assert.ok(error.details.length > 0, 'names at least one field');
  for (const problem of error.details) {
    assert.equal(typeof problem.field, 'string');
    assert.ok(problem.message.length > 0);
    assert.doesNotMatch(problem.message, /\n\s+at /);
  }
}

describe('apply refuses hostile configuration clearly and applies nothing of it', () => {
  const redis = createTestRedis();
  const prefix = uniquePrefix('fuzz');
  const keys = redisKeys(prefix);
  const registry = new ConnectorRegistry();
  const service = createConfigService({ store: createConfigStore({ redis, keys, registry, secrets: createSecretBox('s9T3zjTfFvS7Xo9AA7lVvRk8rBF7fMdyV3bGq3w1pYI=') }), registry, destinationGuard: createDestinationGuard([]) });
  const storedState = async () => JSON.stringify([await redis.hgetall(keys.configEnvironments), await redis.get(keys.configPlugins), await redis.get(keys.configVersion)]);

  after(async () => {
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  test('through the config service: accepted whole, or a clear validation error and nothing changed', async () => {
    await service.apply(template);
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(documents, fc.boolean(), fc.boolean(), async (document, prune, dryRun) => {
        const before = await storedState();
        try {
          await service.apply(document, { prune, dryRun });
          if (dryRun) assert.equal(await storedState(), before, 'a dry run writes nothing');
          // Whatever was accepted reads back.
          await service.exportConfiguration();
        } catch (error) {
          assertClearRefusal(error);
          refused += 1;
          assert.equal(await storedState(), before, 'nothing partially applied');
        }
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 250) },
    );
    assert.ok(refused > 100, `most generated documents are refused (${refused})`);
  });

  test('YAML text: duplicate keys, odd scalars and random text are refused by the loader or by apply, never crash', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flagstream-fuzz-'));
    const path = join(dir, 'config.yaml');
    const texts = fc.oneof(
      documents.map((document) => {
        try {
          return stringify(document) ?? '';
        } catch {
          return 'environments: []\n';
        }
      }),
      fc.constantFrom(
        'environments:\n  - id: a\n    id: b\n',
        'environments:\n  - id: a\n    sdkKeys: [x]\n    sdkKeys: [y]\n',
        'environments: &a [*a]\n',
        'environments:\n  - id: .nan\n    labelsEnabled: .inf\n',
        '--- {}\n--- {}\n',
        'environments: !!binary aGVsbG8=\n',
        `environments:\n  - id: e\n    name: ${'['.repeat(5000)}\n`,
      ),
      fc.string({ unit: 'binary', maxLength: 200 }),
    );
    await fc.assert(
      fc.asyncProperty(texts, async (text) => {
        writeFileSync(path, text);
        const before = await storedState();
        try {
          const file = await loadConfigFile(path);
          await service.apply(file.data, { inputProblems: file.problems });
        } catch (error) {
          assertClearRefusal(error);
          assert.equal(await storedState(), before);
        }
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 150) },
    );
  });

  test('through the CLI: a clear message and exit 1, no stack trace', async () => {
    const entry = fileURLToPath(new URL('../helpers/run-cli.ts', import.meta.url));
    const dir = mkdtempSync(join(tmpdir(), 'flagstream-fuzz-cli-'));
    const samples = fc.sample(
      fc.array(mutation, { minLength: 2, maxLength: 4 }).map(mutate).filter((document) => {
        try {
          return stringify(document) !== undefined;
        } catch {
          return false;
        }
      }),
      { numRuns: 3, seed: 7 },
    );
    for (const [index, document] of samples.entries()) {
      const file = join(dir, `sample-${index}.yaml`);
      writeFileSync(file, stringify(document));
      const before = await storedState();
      const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', entry, 'apply', '-f', file], { env: { ...process.env, REDIS_URL: testRedisUrl, FLAGSTREAM_REDIS_PREFIX: prefix, FLAGSTREAM_LOG_LEVEL: 'warn' } });
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        child.on('close', (code) => resolve({ code, stderr }));
      });
      assert.ok(result.code === 0 || result.code === 1, `exit ${result.code}`);
      assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
      if (result.code === 1) {
        assert.match(result.stderr, /^error: /);
        assert.equal(await storedState(), before);
      }
    }
  });
});
