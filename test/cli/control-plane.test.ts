import { builtInConnectors } from '../../src/connectors/registry.js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { makeImpression } from '../helpers/impressions.js';
import { createTestRedis, deleteKeys, testRedisUrl, uniquePrefix } from '../helpers/redis.js';
import { createDeadLetterStore } from '../../src/stores/dead-letter-store.js';
import { redisKeys } from '../../src/stores/redis-keys.js';

const entry = fileURLToPath(new URL('../helpers/run-cli.ts', import.meta.url));

interface Ended {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** True when the command had to be killed: it never ended on its own. */
  readonly hung: boolean;
}

/** `flagstream ARGS`, killed if it has not ended after `limitMs` (a guard against hanging, not a timing). */
function run(args: readonly string[], env: Record<string, string>, limitMs = 20_000): Promise<Ended> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], { env: { ...process.env, FLAGSTREAM_LOG_LEVEL: 'warn', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let hung = false;
    const timer = setTimeout(() => {
      hung = true;
      child.kill('SIGKILL');
    }, limitMs);
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, hung });
    });
    child.stdin.end();
  });
}

/** Runs a few at a time (the machine is shared): the results in the order given. */
async function runAll(runs: readonly (() => Promise<Ended>)[], concurrency = 3): Promise<Ended[]> {
  const results: Ended[] = [];
  for (let start = 0; start < runs.length; start += concurrency) results.push(...(await Promise.all(runs.slice(start, start + concurrency).map((go) => go()))));
  return results;
}

/** Ended on its own with `code`, and said why in one line without a stack trace. */
function assertEndsWithOneLine(result: Ended, code: number, pattern: RegExp, what: string): void {
  assert.equal(result.hung, false, `${what}: never ended`);
  assert.equal(result.code, code, `${what}: exit code; stderr: ${result.stderr}`);
  const lines = result.stderr.trim().split('\n').filter((line) => line !== '' && !line.startsWith('{'));
  assert.equal(lines.length, 1, `${what}: one line, got:\n${result.stderr}`);
  assert.match(lines[0] ?? '', pattern, what);
  assert.doesNotMatch(result.stderr, /\n\s+at /, `${what}: no stack trace`);
}

const dir = mkdtempSync(join(tmpdir(), 'flagstream-control-'));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const hookSecret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const configYaml = `environments:
  - id: env-prod
    name: Production
    sdkKeys: ["prod-sdk-key"]
    flags:
      - { name: checkout_v2, trackImpressions: true }
    destinations:
      - id: prod-hook
        type: webhook
        settings: { url: "\${HOOK_URL}", secret: "${hookSecret}" }
`;

describe('every command ends, and says why in one line', () => {
  const prefix = uniquePrefix('ends');
  const redis = createTestRedis();
  const key = randomBytes(32).toString('base64');
  const env = { REDIS_URL: testRedisUrl, FLAGSTREAM_REDIS_PREFIX: prefix, HOOK_URL: 'https://hooks.example.com/prod' };

  before(async () => {
    const applied = await run(['apply', '-f', file('encrypted.yaml', configYaml)], { ...env, FLAGSTREAM_ENCRYPTION_KEY: key });
    assert.equal(applied.code, 0, applied.stderr);
    assert.match((await redis.hget(`${prefix}:config:environments`, 'env-prod')) ?? '', /enc:v1:/);
  });
  after(async () => {
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  test('with a missing, wrong or malformed encryption key, commands that need it fail at once; the others work', async () => {
    const keys = { missing: '', wrong: randomBytes(32).toString('base64'), malformed: 'not-a-key' };
    const applyArgs = ['apply', '-f', join(dir, 'encrypted.yaml')];
    // Each way in: serve builds the whole context, apply and destinations test a CLI session with secrets.
    const needKey: [string, string[], keyof typeof keys][] = [
      ['serve', ['serve', '--port', '0'], 'missing'],
      ['serve', ['serve', '--port', '0'], 'wrong'],
      ['serve', ['serve', '--port', '0'], 'malformed'],
      ['apply', applyArgs, 'wrong'],
      ['apply', applyArgs, 'malformed'],
      ['destinations test', ['destinations', 'test', 'prod-hook'], 'missing'],
    ];
    const failed = await runAll(needKey.map(([, args, state]) => () => run(args, { ...env, FLAGSTREAM_ENCRYPTION_KEY: keys[state] })));
    needKey.forEach(([name, , state], index) => assertEndsWithOneLine(failed[index] as Ended, 1, /^error: .*FLAGSTREAM_ENCRYPTION_KEY/, `${name} with a ${state} key`));

    const noKey: [string, string[], keyof typeof keys][] = [
      ['export', ['export'], 'wrong'],
      ['stats', ['stats', 'env-prod'], 'wrong'],
      ['dlq list', ['dlq', 'list'], 'malformed'],
      ['connectors', ['connectors'], 'malformed'],
    ];
    const worked = await runAll(noKey.map(([, args, state]) => () => run(args, { ...env, FLAGSTREAM_ENCRYPTION_KEY: keys[state] })));
    noKey.forEach(([name, , state], index) => {
      const result = worked[index] as Ended;
      assert.equal(result.hung, false, `${name} never ended`);
      assert.equal(result.code, 0, `${name} with a ${state} key: ${result.stderr}`);
      assert.equal(result.stderr, '', `${name}: nothing on stderr`);
    });
    assert.match(worked[0]?.stdout ?? '', /sdkKeys:\n\s+- "\[redacted\]"/);
  });

  test('FLAGSTREAM_LOG_LEVEL=debug adds the stack trace', async () => {
    const result = await run(['apply', '-f', join(dir, 'encrypted.yaml')], { ...env, FLAGSTREAM_ENCRYPTION_KEY: '', FLAGSTREAM_LOG_LEVEL: 'debug' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /\n\s+at /);
  });

  test('serve on a port already taken says so and exits instead of running as a headless worker', async () => {
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const result = await run(['serve', '--port', String(port)], { ...env, FLAGSTREAM_ENCRYPTION_KEY: key, HOST: '127.0.0.1' });
      assertEndsWithOneLine(result, 1, new RegExp(`^error: port ${port} on 127.0.0.1 is already in use`), 'serve on a taken port');
    } finally {
      taken.close();
    }
  });

  test('connectors needs no Redis at all', async () => {
    const closed: Server = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const result = await run(['connectors', '--json'], { REDIS_URL: `redis://127.0.0.1:${port}`, FLAGSTREAM_REDIS_DIR: join(dir, 'no-redis') });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual((JSON.parse(result.stdout) as { connectors: { type: string }[] }).connectors.map((c) => c.type), builtInConnectors.map((c) => c.type).sort((a, b) => a.localeCompare(b)));
  });
});

describe('names that do not exist, the safety catch, dry-run diffs and quiet success', () => {
  const prefix = uniquePrefix('names');
  const redis = createTestRedis();
  const env: Record<string, string> = { REDIS_URL: testRedisUrl, FLAGSTREAM_REDIS_PREFIX: prefix, FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1' };
  let receiver: HttpReceiver;
  let config = '';

  before(async () => {
    receiver = await HttpReceiver.start();
    env.HOOK_URL = `${receiver.url}/hook`;
    config = file('names.yaml', configYaml);
    const store = createDeadLetterStore({ redis, keys: redisKeys(prefix), retentionMs: 86_400_000 });
    await store.record({
      key: 'one',
      destinationId: 'prod-hook',
      environmentId: 'env-prod',
      connectorType: 'webhook',
      reason: 'retries_exhausted',
      error: { message: 'HTTP 503' },
      attempts: 3,
      firstAttemptAt: 1,
      lastAttemptAt: 2,
      impressions: [makeImpression()],
    });
  });
  after(async () => {
    await receiver.close();
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  test('apply succeeds without a "configuration reload failed" warning; so does every later command', async () => {
    const applied = await run(['apply', '-f', config], env);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /\+ environment env-prod/);
    assert.equal(applied.stderr, '', 'nothing on stderr after a successful apply');
    const exported = await run(['export'], env);
    assert.equal(exported.stderr, '');
  });

  test('typos are errors: stats, dlq list, replay and purge of a name that does not exist', async () => {
    const cases: [string[], RegExp][] = [
      [['stats', 'env-nope'], /^error: no environment "env-nope"/],
      [['stats', 'env-prd'], /did you mean env-prod\?/],
      [['dlq', 'list', '--destination', 'nope'], /^error: no destination "nope"/],
      [['dlq', 'replay', '--destination', 'nope'], /^error: no destination "nope"/],
      [['dlq', 'purge', '--destination', 'prod-hok', '--yes'], /did you mean prod-hook\?/],
    ];
    for (const [args, pattern] of cases) assertEndsWithOneLine(await run(args, env), 1, pattern, args.join(' '));
    assert.equal((await createDeadLetterStore({ redis, keys: redisKeys(prefix), retentionMs: 86_400_000 }).listIds({})).length, 1, 'nothing purged');
  });

  test('dry run shows each field that changes, secrets as [redacted]', async () => {
    const changed = file('changed.yaml', configYaml.replace('trackImpressions: true', 'trackImpressions: false').replace(hookSecret, 'whsec_b3RoZXItc2VjcmV0LTEyMzQ1Ng=='));
    const result = await run(['apply', '-f', changed, '--dry-run'], env);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /~ flag env-prod\/checkout_v2\n\s+trackImpressions: true → false\n/);
    assert.match(result.stdout, /~ destination env-prod\/prod-hook\n\s+settings\.secret: \[redacted\] \(changed\)\n/);
    assert.doesNotMatch(result.stdout, /b3RoZXI|MfKQ9r8/);
  });

  test('apply --prune and dlq purge need --yes without a terminal, and change nothing without it', async () => {
    const empty = file('empty.yaml', '');
    const pruned = await run(['apply', '-f', empty, '--prune'], env);
    assert.equal(pruned.code, 1);
    assert.match(pruned.stderr, /- environment env-prod/);
    assert.match(pruned.stderr, /run it again with --yes/);
    assert.equal(await redis.hexists(`${prefix}:config:environments`, 'env-prod'), 1, 'nothing deleted');
    // --prune that deletes nothing asks nothing.
    assert.equal((await run(['apply', '-f', config, '--prune'], env)).code, 0);

    const purge = await run(['dlq', 'purge', '--all'], env);
    assertEndsWithOneLine(purge, 1, /dlq purge deletes 1 dead letter\(s\) for good; nothing was changed: run it again with --yes/, 'dlq purge --all');
    assert.equal((await createDeadLetterStore({ redis, keys: redisKeys(prefix), retentionMs: 86_400_000 }).listIds({})).length, 1, 'nothing purged');
  });

  test('a YAML file\'s problems come with their file and line', async () => {
    const invalid = file('invalid.yaml', 'environments:\n  - id: env-prod\n    sdkKey: ["k"]\n    flags:\n      - { name: f, trackImpressions: "yes" }\n');
    const result = await run(['apply', '-f', invalid], env);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /invalid\.yaml:3: environments\[0\]\.sdkKey: unknown key; did you mean sdkKeys\?/);
    assert.match(result.stderr, /invalid\.yaml:5: environments\[0\]\.flags\[0\]\.trackImpressions: /);
  });

  test('destinations test sends the environment name, and REDIS_URL may be host:port', async () => {
    const hostPort = testRedisUrl.replace(/^redis:\/\//, '');
    const result = await run(['destinations', 'test', 'prod-hook', '--json'], { ...env, REDIS_URL: hostPort });
    assert.equal(result.code, 0, result.stderr + result.stdout);
    const [impression] = receiver.impressions();
    assert.equal(impression?.environmentId, 'env-prod');
    assert.equal(impression?.environmentName, 'Production');
    // Without the server's allowlist the local test is refused, and says where the allowlist comes from.
    const refused = await run(['destinations', 'test', 'prod-hook'], { ...env, FLAGSTREAM_DESTINATION_ALLOWLIST: '' });
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /FLAGSTREAM_DESTINATION_ALLOWLIST=""; set it as the server has it, or test from the server: POST \/admin\/v1\/destinations\/prod-hook\/test/);
  });
});
