import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runFlagstream } from '../helpers/cli.js';
import { createTestRedis, deleteKeys, testRedisUrl, uniquePrefix } from '../helpers/redis.js';

const dir = mkdtempSync(join(tmpdir(), 'flagstream-cli-'));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const validYaml = `
environments:
  - id: env-prod
    name: Production
    sdkKeys: ["\${PROD_SDK_KEY}"]
    webhookToken: "\${PROD_WEBHOOK_TOKEN:-fallback-token}"
    flags:
      - { name: new_checkout, trafficType: user, trackImpressions: true }
      - { name: quiet_flag, trafficType: user, trackImpressions: false }
    destinations:
      - id: prod-hook
        type: webhook
        settings: { url: "https://hooks.example.com/impressions", secret: "\${HOOK_SECRET}" }
        filters: { flags: ["*"], trafficTypes: ["user"] }
`;

describe('flagstream apply / export', () => {
  const prefix = uniquePrefix('cli');
  const redis = createTestRedis();
  const env = {
    REDIS_URL: testRedisUrl,
    FLAGSTREAM_REDIS_PREFIX: prefix,
    PROD_SDK_KEY: 'sdk-key-secret-value',
    HOOK_SECRET: 'whsec_c2VudGluZWwtc2VjcmV0LXZhbHVl',
  };
  let valid: string;

  before(() => {
    valid = file('valid.yaml', validYaml);
  });
  after(async () => {
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  test('rejects an invalid file with every error and its path, and exits non-zero', async () => {
    const invalid = file(
      'invalid.yaml',
      `environments:
  - id: env-prod
    flags: [ { name: f, trackImpressions: "yes" } ]
    destinations:
      - { id: a, type: webhook, settings: { url: "not a url" } }
      - { id: b, type: carrier-pigeon }
`,
    );
    const result = await runFlagstream(['apply', '-f', invalid], env);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /environments\[0\]\.flags\[0\]\.trackImpressions/);
    const second = await runFlagstream(['apply', '-f', file('invalid2.yaml', 'environments:\n  - id: env-prod\n    destinations:\n      - { id: a, type: webhook, settings: { url: "not a url" } }\n      - { id: b, type: carrier-pigeon }\n')], env);
    assert.equal(second.code, 1);
    assert.match(second.stderr, /environments\[0\]\.destinations\[0\]\.settings\.url/);
    assert.match(second.stderr, /environments\[0\]\.destinations\[1\]\.type: unknown connector type "carrier-pigeon"/);
  });

  test('names a missing environment variable', async () => {
    const result = await runFlagstream(['apply', '-f', valid], { ...env, PROD_SDK_KEY: '' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /environments\[0\]\.sdkKeys\[0\]: environment variable PROD_SDK_KEY is not set/);
  });

  test('--dry-run prints the diff and changes nothing', async () => {
    const result = await runFlagstream(['apply', '-f', valid, '--dry-run'], env);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /\+ environment env-prod/);
    assert.match(result.stdout, /\+ destination env-prod\/prod-hook/);
    assert.match(result.stdout, /would be applied \(dry run\)/);
    assert.equal(await redis.exists(`${prefix}:config:environments`), 0);
  });

  test('applies, then a second apply is a no-op (idempotent)', async () => {
    const first = await runFlagstream(['apply', '-f', valid, '--json'], env);
    assert.equal(first.code, 0, first.stderr);
    assert.equal((JSON.parse(first.stdout) as { changes: unknown[] }).changes.length, 4);
    const second = await runFlagstream(['apply', '-f', valid], env);
    assert.equal(second.code, 0);
    assert.match(second.stdout, /no changes/);
  });

  test('export prints YAML with secrets redacted; applying the export changes nothing', async () => {
    const exported = await runFlagstream(['export'], env);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /\[redacted\]/);
    assert.doesNotMatch(exported.stdout, /sdk-key-secret-value|c2VudGluZWwtc2VjcmV0LXZhbHVl|fallback-token/);
    assert.match(exported.stdout, /url: https:\/\/hooks\.example\.com\/impressions/);
    const roundTrip = await runFlagstream(['apply', '-f', file('exported.yaml', exported.stdout)], env);
    assert.equal(roundTrip.code, 0, roundTrip.stderr);
    assert.match(roundTrip.stdout, /no changes/);
    // And the secrets survived the round trip.
    const raw = await redis.hget(`${prefix}:config:environments`, 'env-prod');
    assert.match(raw ?? '', /sdk-key-secret-value/);
  });

  test('--prune removes what the file no longer names', async () => {
    const smaller = file('smaller.yaml', validYaml.replace(/\s+- \{ name: quiet_flag[^\n]*\n/, '\n'));
    const withoutPrune = await runFlagstream(['apply', '-f', smaller], env);
    assert.match(withoutPrune.stdout, /no changes/);
    const pruned = await runFlagstream(['apply', '-f', smaller, '--prune', '--yes'], env);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.match(pruned.stdout, /- flag env-prod\/quiet_flag/);
    const exported = await runFlagstream(['export', '--json'], env);
    const config = JSON.parse(exported.stdout) as { environments: { flags: { name: string }[] }[] };
    assert.deepEqual(config.environments[0]?.flags.map((f) => f.name), ['new_checkout']);
  });

  test('a usage error exits non-zero with a message', async () => {
    const result = await runFlagstream(['apply'], env);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /required option '-f, --file <file>'/);
  });
});
