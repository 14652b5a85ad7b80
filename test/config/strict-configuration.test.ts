import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, describe, test } from 'node:test';
import { createConfigService } from '../../src/admin/config-service.js';
import { createDestinationGuard } from '../../src/delivery/destination-guard.js';
import { loadConfigFile, type LocatedProblem, withLines } from '../../src/admin/load-config-file.js';
import { closestName } from '../../src/admin/unknown-keys.js';
import { normalizeRedisUrl, readEnv } from '../../src/app-config.js';
import { ConnectorRegistry } from '../../src/connectors/registry.js';
import type { ConfigurationInput } from '../../src/domain/configuration.js';
import { formatDuration, parseDuration } from '../../src/domain/duration.js';
import { AppError, type FieldProblem } from '../../src/domain/errors.js';
import { createConfigStore } from '../../src/stores/config-store.js';
import { redisKeys } from '../../src/stores/redis-keys.js';
import { createSecretBox } from '../../src/stores/secret-box.js';
import { createTestRedis, deleteKeys, uniquePrefix } from '../helpers/redis.js';

const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

/** The problems a call was refused with (it must be refused with a validation error). */
async function problemsOf(call: Promise<unknown>): Promise<FieldProblem[]> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof AppError, `expected an AppError, got ${String(error)}`);
    assert.equal(error.code, 'FLAGSTREAM_ERR_VALIDATION', error.message);
    return [...error.details];
  }
  assert.fail('expected a validation error');
}

function problemAt(problems: readonly FieldProblem[], field: string): FieldProblem {
  const found = problems.find((p) => p.field === field);
  assert.ok(found, `no problem at ${field}; got:\n${problems.map((p) => `${p.field}: ${p.message}`).join('\n')}`);
  return found;
}

describe('one strict configuration schema, every problem in one pass', () => {
  const redis = createTestRedis();
  const registry = new ConnectorRegistry();
  let prefix = uniquePrefix('strict');
  let service = createConfigService({ store: createConfigStore({ redis, keys: redisKeys(prefix), registry, secrets: createSecretBox(randomBytes(32).toString('base64')) }), registry, destinationGuard: createDestinationGuard([]) });
  const stored = async () => redis.hgetall(`${prefix}:config:environments`);

  beforeEach(async () => {
    await deleteKeys(redis, prefix);
    prefix = uniquePrefix('strict');
    service = createConfigService({ store: createConfigStore({ redis, keys: redisKeys(prefix), registry, secrets: createSecretBox(randomBytes(32).toString('base64')) }), registry, destinationGuard: createDestinationGuard([]) });
  });
  after(async () => {
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  test('unknown keys are errors with a suggestion, at every level and inside connector settings', async () => {
    const problems = await problemsOf(
      service.apply({
        environments: [
          {
            id: 'env-prod',
            labelsEnabld: false,
            flags: [{ name: 'f', trackImpresions: false }],
            destinations: [
              { id: 'seg', type: 'segment', settings: { writeKey: 'wk', regoin: 'eu' }, delivery: { bachSize: 10 } },
              { id: 'hook', type: 'webhook', settings: { url: 'https://hooks.example.com', secret }, filter: { flags: ['*'] } },
            ],
          },
        ],
        plugin: [],
      }),
    );
    assert.match(problemAt(problems, 'environments[0].labelsEnabld').message, /did you mean labelsEnabled\?/);
    assert.match(problemAt(problems, 'environments[0].flags[0].trackImpresions').message, /did you mean trackImpressions\?/);
    assert.match(problemAt(problems, 'environments[0].destinations[0].settings.regoin').message, /did you mean region\?/);
    // `batchSize` is a setting of the connector, not of the delivery policy.
    assert.match(problemAt(problems, 'environments[0].destinations[0].delivery.bachSize').message, /did you mean settings\.batchSize\?/);
    assert.match(problemAt(problems, 'environments[0].destinations[1].filter').message, /did you mean filters\?/);
    assert.match(problemAt(problems, 'plugin').message, /did you mean plugins\?/);
    assert.equal(problems.length, 6);
    assert.deepEqual(await stored(), {}, 'nothing applied');
  });

  test('a key with no near match lists what is accepted', async () => {
    const problems = await problemsOf(service.apply({ environments: [{ id: 'e', colour: 'blue' }] }));
    assert.match(problemAt(problems, 'environments[0].colour').message, /unknown key; expected one of: id, name, sdkKeys, webhookToken, labelsEnabled, unknownFlags, flags, destinations/);
  });

  test('a dozen problems across shape, settings, durations and rules are all reported at once', async () => {
    const problems = await problemsOf(
      service.apply({
        environments: [
          {
            id: 'env-prod',
            sdkKeys: ['prod-key'],
            labelsEnabld: false, // 1 unknown key
            unknownFlags: 'ignore', // 2 bad enum
            flags: [
              { name: 'f', trackImpressions: 'yes' }, // 3 bad type
              { name: 'f' }, // 4 duplicate flag
            ],
            destinations: [
              // A shape problem beside settings problems: both reported in the same pass.
              { id: 'seg', type: 'segment', enabled: 'no', settings: { regoin: 'eu' } }, // 5 enabled, 6 regoin, 7 writeKey missing
              { id: 'hook', type: 'webhook', settings: { url: 'not a url' }, delivery: { timeout: '5 minutes' } }, // 8 url, 9 duration
            ],
          },
          { id: 'env-b', sdkKeys: ['prod-key'], destinations: [{ id: 'seg', type: 'webhok', settings: {} }] }, // 10 key conflict, 11 id conflict, 12 unknown type
        ],
      }),
    );
    for (const field of [
      'environments[0].labelsEnabld',
      'environments[0].unknownFlags',
      'environments[0].flags[0].trackImpressions',
      'environments[0].flags[1].name',
      'environments[0].destinations[0].enabled',
      'environments[0].destinations[0].settings.regoin',
      'environments[0].destinations[0].settings.writeKey',
      'environments[0].destinations[1].settings.url',
      'environments[0].destinations[1].delivery.timeout',
      'environments[1].sdkKeys[0]',
      'environments[1].destinations[0].id',
      'environments[1].destinations[0].type',
    ]) {
      problemAt(problems, field);
    }
    assert.equal(problems.length, 12, problems.map((p) => p.field).join(', '));
  });

  test('a conflict with what is stored names the right index and both environments', async () => {
    await service.apply({
      environments: [
        { id: 'env-dev', sdkKeys: ['dev-key'] },
        { id: 'env-prod', sdkKeys: ['prod-key'], webhookToken: 'prod-token', destinations: [{ id: 'prod-hook', type: 'webhook', settings: { url: 'https://hooks.example.com' } }] },
      ],
    });
    const problems = await problemsOf(
      service.apply({ environments: [{ id: 'newenv', sdkKeys: ['new-key', 'prod-key'], webhookToken: 'prod-token', destinations: [{ id: 'prod-hook', type: 'webhook', settings: { url: 'https://x.example.com' } }] }] }),
    );
    assert.deepEqual(problems.map((p) => p.field), ['environments[0].destinations[0].id', 'environments[0].sdkKeys[1]', 'environments[0].webhookToken']);
    for (const problem of problems) {
      assert.match(problem.message, /environment "env-prod"/);
      assert.match(problem.message, /"newenv"/);
      assert.doesNotMatch(problem.message, /prod-key|prod-token/, 'no secret in the message');
    }
    // The same through the admin API's PUT, with paths relative to the body.
    const put = await problemsOf(service.putEnvironment('newenv', { sdkKeys: ['prod-key'] }));
    assert.equal(put[0]?.field, 'sdkKeys[0]');
    assert.match(put[0]?.message ?? '', /environment "env-prod".*"newenv"/);
  });

  test('re-applying an export with redacted keys in several environments is no conflict; a redacted key with nothing stored is refused', async () => {
    await service.apply({ environments: [{ id: 'a', sdkKeys: ['key-a'] }, { id: 'b', sdkKeys: ['key-b'] }] });
    const exported = await service.exportConfiguration();
    assert.deepEqual(await service.apply(exported as ConfigurationInput), []);
    const problems = await problemsOf(service.apply({ environments: [{ id: 'c', sdkKeys: ['[redacted]'] }] }));
    assert.match(problemAt(problems, 'environments[0].sdkKeys[0]').message, /nothing is stored at this place/);
  });

  test('durations are accepted in the human form and exported in it; a wrong one says which forms are accepted', async () => {
    await service.apply({
      environments: [{ id: 'e', destinations: [{ id: 'd', type: 'webhook', settings: { url: 'https://h.example.com' }, delivery: { timeout: '1m30s', retrySchedule: ['5s', '10m', '1h30m'], circuitBreakerCooldown: 90_000 } }] }],
    });
    const environment = (await service.exportConfiguration()).environments[0];
    assert.deepEqual(environment?.destinations?.[0]?.delivery, { retrySchedule: ['5s', '10m', '1h30m'], timeout: '1m30s', circuitBreakerThreshold: 10, circuitBreakerCooldown: '1m30s' });
    assert.match(await service.exportYaml(), /- 1h30m/);
    const problems = await problemsOf(service.apply({ environments: [{ id: 'e', destinations: [{ id: 'd', type: 'webhook', settings: { url: 'https://h.example.com' }, delivery: { timeout: 'soon' } }] }] }));
    assert.match(problemAt(problems, 'environments[0].destinations[0].delivery.timeout').message, /expected a duration like 250ms, 5s, 10m, 1h30m or 14d/);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('30m1h'), undefined, 'units largest first');
    assert.equal(parseDuration('99999999999999999999d'), undefined);
    assert.equal(formatDuration(5_400_000), '1h30m');
    assert.equal(formatDuration(1500), '1s500ms');
  });

  test('dry run reports each changed field; secrets only as [redacted]', async () => {
    const base = { id: 'prod', sdkKeys: ['k1'], flags: [{ name: 'checkout_v2', trackImpressions: true }], destinations: [{ id: 'h', type: 'webhook', settings: { url: 'https://a.example.com', secret } }] };
    await service.apply({ environments: [base] });
    const changes = await service.apply(
      {
        environments: [
          {
            ...base,
            sdkKeys: ['k2'],
            flags: [{ name: 'checkout_v2', trackImpressions: false }],
            destinations: [{ id: 'h', type: 'webhook', settings: { url: 'https://b.example.com', secret: 'whsec_b3RoZXItc2VjcmV0LTEyMzQ1Ng==' }, delivery: { timeout: '5s' } }],
          },
        ],
      },
      { dryRun: true },
    );
    const fields = Object.fromEntries(changes.map((c) => [`${c.kind} ${c.id}`, c.fields]));
    assert.deepEqual(fields['flag checkout_v2'], [{ path: 'trackImpressions', before: true, after: false, secret: false }]);
    assert.deepEqual(fields['environment prod'], [{ path: 'sdkKeys', before: '[redacted]', after: '[redacted]', secret: true }]);
    assert.deepEqual(fields['destination h'], [
      { path: 'settings.url', before: 'https://a.example.com', after: 'https://b.example.com', secret: false },
      { path: 'settings.secret', before: '[redacted]', after: '[redacted]', secret: true },
      { path: 'delivery.timeout', before: '10s', after: '5s', secret: false },
    ]);
    assert.doesNotMatch(JSON.stringify(changes), /k2|b3RoZXI/);
  });

  test('the file lines of a YAML configuration come with its problems, and YAML errors are all listed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flagstream-lines-'));
    const path = join(dir, 'flagstream.yaml');
    writeFileSync(path, ['environments:', '  - id: env-prod', '    labelsEnabld: false', '    destinations:', '      - id: seg', '        type: segment', '        settings:', '          writeKey: wk', '          regoin: eu', ''].join('\n'));
    const file = await loadConfigFile(path);
    const error = await service.apply(file.data).catch((e: unknown) => e);
    assert.ok(error instanceof AppError);
    const located = withLines(error, file).details as readonly LocatedProblem[];
    assert.deepEqual(
      located.map((p) => [p.line, p.field]),
      [
        [3, 'environments[0].labelsEnabld'],
        [9, 'environments[0].destinations[0].settings.regoin'],
      ],
    );
    writeFileSync(path, 'environments:\n  - id: a\n    id: b\n  - { id: c\n');
    const broken = await loadConfigFile(path).catch((e: unknown) => e);
    assert.ok(broken instanceof AppError);
    assert.deepEqual((broken.details as readonly LocatedProblem[]).map((p) => p.line), [3, 5]);
    assert.match(broken.details[0]?.message ?? '', /unique/);
  });

  test('unset ${VAR}s are reported together with the validation problems', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flagstream-vars-'));
    const path = join(dir, 'flagstream.yaml');
    writeFileSync(path, 'environments:\n  - id: e\n    sdkKeys: ["${NOT_SET_ANYWHERE_H5}"]\n    labelsEnabld: true\n');
    const file = await loadConfigFile(path, {});
    const problems = await problemsOf(service.apply(file.data, { inputProblems: file.problems }));
    assert.deepEqual(
      problems.map((p) => p.field),
      ['environments[0].labelsEnabld', 'environments[0].sdkKeys[0]'],
    );
    assert.match(problemAt(problems, 'environments[0].sdkKeys[0]').message, /NOT_SET_ANYWHERE_H5 is not set/);
  });

  test('apply --if-empty seeds an empty configuration and leaves a configured one alone', async () => {
    const seed = { environments: [{ id: 'e', flags: [{ name: 'f', trackImpressions: true }] }] };
    assert.equal((await service.apply(seed, { ifEmpty: true })).length, 2);
    await service.putFlag('e', 'f', { trackImpressions: false }, true);
    assert.deepEqual(await service.apply(seed, { ifEmpty: true }), []);
    assert.equal((await service.getEnvironment('e')).flags?.[0]?.trackImpressions, false, 'the API edit survives');
  });

  test('suggestions, and REDIS_URL written as host:port', () => {
    assert.equal(closestName('sdkKey', ['sdkKeys', 'webhookToken']), 'sdkKeys');
    assert.equal(closestName('regoin', ['region', 'baseUrl']), 'region');
    assert.equal(closestName('colour', ['id', 'name']), undefined);
    assert.equal(readEnv({ REDIS_URL: '127.0.0.1:6379' }).REDIS_URL, 'redis://127.0.0.1:6379');
    assert.equal(normalizeRedisUrl('redis:6379'), 'redis://redis:6379');
    assert.equal(readEnv({ REDIS_URL: 'rediss://user:pw@h:6380/1' }).REDIS_URL, 'rediss://user:pw@h:6380/1');
    assert.throws(() => readEnv({ REDIS_URL: 'http://h:6379' }), /REDIS_URL: expected redis:\/\//);
  });
});
