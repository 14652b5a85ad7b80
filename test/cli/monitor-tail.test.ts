import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { MonitoringReport } from '../../src/admin/monitoring-service.js';
import { sparkline } from '../../src/cli/commands/monitor-command.js';
import { formatTailLine } from '../../src/cli/commands/tail-command.js';
import type { TailEvent } from '../../src/routing/live-tail.js';
import { runFlagstream } from '../helpers/cli.js';
import { waitUntil } from '../helpers/deferred.js';
import { makeImpression } from '../helpers/impressions.js';
import { testRedisUrl } from '../helpers/redis.js';
import { adminToken, postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

const sdk = { authorization: 'Bearer cli-sdk-key' };
const entry = fileURLToPath(new URL('../helpers/run-cli.ts', import.meta.url));

/** `flagstream ARGS` left running, its output collected as it comes. */
function startFlagstream(args: readonly string[], env: Record<string, string>) {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', entry, ...args], { env: { ...process.env, FLAGSTREAM_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const events = new EventEmitter();
  const output = { stdout: '', stderr: '', code: undefined as number | null | undefined };
  child.stdout?.on('data', (chunk: Buffer) => {
    output.stdout += chunk.toString();
    events.emit('change');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output.stderr += chunk.toString();
    events.emit('change');
  });
  child.on('close', (code) => {
    output.code = code;
    events.emit('change');
  });
  const waitFor = (condition: () => boolean, what: string) =>
    waitUntil(condition, (onChange) => {
      events.on('change', onChange);
      return () => events.off('change', onChange);
    }, 20_000, what);
  return { child, output, waitFor };
}

describe('flagstream monitor and flagstream tail', () => {
  let app: TestApp;
  let env: Record<string, string>;
  const minute = 60_000;
  const base = Math.floor(Date.now() / minute) * minute - 5 * minute;

  before(async () => {
    app = await startTestApp({ workerOptions: { tailCheckIntervalMs: 0 } });
    env = { REDIS_URL: testRedisUrl, FLAGSTREAM_REDIS_PREFIX: app.ctx.env.FLAGSTREAM_REDIS_PREFIX, FLAGSTREAM_ADMIN_URL: app.url, ADMIN_TOKEN: adminToken };
    await app.apply({
      environments: [
        {
          id: 'env-cli',
          sdkKeys: ['cli-sdk-key'],
          flags: [
            { name: 'new_checkout', trafficType: 'user', trackImpressions: true },
            { name: 'quiet_flag', trafficType: 'user', trackImpressions: false },
          ],
        },
      ],
    });
    const response = await postJson(
      `${app.url}/v1/impressions`,
      {
        impressions: [
          { key: 'user-1', split: 'new_checkout', treatment: 'on', time: base },
          { key: 'user-2', split: 'new_checkout', treatment: 'on', time: base + minute },
          { key: 'user-3', split: 'new_checkout', treatment: 'off', time: base + minute },
          { key: 'user-4', split: 'quiet_flag', treatment: 'on', time: base },
        ],
      },
      sdk,
    );
    assert.equal(response.status, 202);
    await app.waitForRoutings(1);
  });
  after(async () => {
    await app.close();
  });

  test('monitor --json prints the series the admin API serves; without it, a table with sparklines', async () => {
    const json = await runFlagstream(['monitor', 'env-cli', '--since', new Date(base).toISOString(), '--json'], env);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as MonitoringReport;
    assert.deepEqual(report.flags.map((f) => [f.flag, f.total, f.uniqueKeys]), [['new_checkout', 3, 3]]);
    assert.deepEqual(report.flags[0]?.treatments.find((t) => t.treatment === 'on')?.impressions.slice(0, 2), [1, 1]);
    assert.equal(report.mtks[0]?.keys, 4);

    const table = await runFlagstream(['monitor', 'env-cli', 'new_checkout', '--since', '15m'], env);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^env-cli: .* one minute per bucket; .* MTKs \d{4}-\d\d: 4$/m);
    assert.match(table.stdout, /^FLAG\s+TREATMENT\s+IMPRESSIONS\s+UNIQUEKEYS\s+TRAFFIC \(1 MIN\/COLUMN\)$/m);
    assert.match(table.stdout, /^new_checkout\s+off\s+1\s+1\s+[·▁▂▃▄▅▆▇█]{15,16}$/m);
    assert.match(table.stdout, /^\s+on\s+2\s+2\s+[·▁▂▃▄▅▆▇█]{15,16}$/m);
    assert.match(table.stdout, /^\s+\(all\)\s+3\s+3$/m);
  });

  test('monitor of an unknown environment, or with a bad --since, exits non-zero with a message', async () => {
    const unknown = await runFlagstream(['monitor', 'nope'], env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no environment "nope"/);
    const since = await runFlagstream(['monitor', 'env-cli', '--since', 'yesterday-ish'], env);
    assert.equal(since.code, 1);
    assert.match(since.stderr, /since: expected an ISO date/);
  });

  test('tail --json prints one JSON object per impression as it is routed; Ctrl-C ends it cleanly', async () => {
    const tail = startFlagstream(['tail', 'env-cli', '--json'], env);
    try {
      await tail.waitFor(() => /watching env-cli/.test(tail.output.stderr) || tail.output.code !== undefined, 'the tail to start');
      assert.equal(tail.output.code, undefined, tail.output.stderr);
      const response = await postJson(
        `${app.url}/v1/impressions`,
        {
          impressions: [
            { key: 'user-7', split: 'new_checkout', treatment: 'on', time: Date.now() },
            { key: 'user-8', split: 'quiet_flag', treatment: 'off', time: Date.now() },
          ],
        },
        sdk,
      );
      assert.equal(response.status, 202);
      await tail.waitFor(() => tail.output.stdout.split('\n').filter(Boolean).length >= 2, 'two lines');
      const events = tail.output.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as TailEvent);
      assert.deepEqual(events.map((e) => [e.outcome, e.reason, e.impression.key]), [
        ['tracked', undefined, 'user-7'],
        ['dropped', 'tracking_off', 'user-8'],
      ]);
      tail.child.kill('SIGINT');
      await tail.waitFor(() => tail.output.code !== undefined, 'the tail to exit');
      assert.equal(tail.output.code, 0, tail.output.stderr);
    } finally {
      tail.child.kill('SIGKILL');
    }
  });

  test('tail of an unknown environment exits non-zero with the API message', async () => {
    const unknown = await runFlagstream(['tail', 'nope'], env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /404: no environment "nope"/);
  });

  test('the terminal formats: one readable line per impression, sparklines relative to the busiest column', () => {
    const routedAt = '2026-11-24T20:42:10.123Z';
    const tracked: TailEvent = { environmentId: 'env-cli', routedAt, outcome: 'tracked', destinations: ['hook-a', 's3-archive'], impression: makeImpression({ key: 'user-42', treatment: 'on' }) };
    assert.equal(formatTailLine(tracked), `${routedAt}  tracked  new_checkout  on  key=user-42  → hook-a, s3-archive`);
    const dropped: TailEvent = { environmentId: 'env-cli', routedAt, outcome: 'dropped', reason: 'tracking_off', destinations: [], impression: makeImpression({ key: 'user-43', split: 'quiet_flag', treatment: 'off' }) };
    assert.equal(formatTailLine(dropped), `${routedAt}  dropped  quiet_flag  off  key=user-43  (tracking_off)`);
    assert.equal(sparkline([0, 1, 2, 4, 8]), '·▁▂▄█');
    assert.equal(sparkline(Array.from({ length: 120 }, (_, i) => (i < 60 ? 0 : 1)), 60), '······························██████████████████████████████');
  });
});
