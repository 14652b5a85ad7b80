import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { afterEach, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { createLogger } from '../../src/observability/logger.js';
import { createRedisOutageLog } from '../../src/runtime/redis-outage-log.js';
import { waitUntil } from '../helpers/deferred.js';
import { PrivateRedis } from '../helpers/private-redis.js';
import { uniquePrefix } from '../helpers/redis.js';
import { type LogLine, ServeProcess } from '../helpers/serve-process.js';

/** Log lines written by a logger, parsed, with a change event to wait on. */
class CapturedLog extends Writable {
  readonly lines: LogLine[] = [];
  private readonly changes = new EventEmitter();

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString().split('\n')) if (line.trim() !== '') this.lines.push(JSON.parse(line) as LogLine);
    this.changes.emit('change');
    done();
  }

  waitFor(condition: () => boolean, what: string): Promise<void> {
    return waitUntil(condition, (onChange) => (this.changes.on('change', onChange), () => this.changes.off('change', onChange)), 15_000, what);
  }
}

const debugErrors = (lines: readonly LogLine[]) => lines.filter((line) => line.level === 20 && line.msg === 'redis connection error').length;

describe('a Redis outage in the log: one line when it starts, a summary now and then, one when it ends', () => {
  const started: { redis?: PrivateRedis; client?: Redis; serve?: ServeProcess } = {};
  afterEach(async () => {
    started.client?.disconnect();
    await started.serve?.kill();
    await started.redis?.kill();
  });

  test('however many connection errors, at most one line per summary interval', async () => {
    const redis = (started.redis = await PrivateRedis.start());
    const log = new CapturedLog();
    let now = 1_000_000;
    const outages = createRedisOutageLog(createLogger('debug', log), { summaryEveryMs: 30_000, clock: () => now });
    // Reconnects every 10 ms: many errors in little time.
    const client = (started.client = new Redis(redis.url, { lazyConnect: true, retryStrategy: () => 10, maxRetriesPerRequest: null }));
    outages.watch(client, 'main');
    await client.connect();
    const loud = () => log.lines.filter((line) => line.level >= 40);

    await redis.kill();
    await log.waitFor(() => debugErrors(log.lines) >= 20, '20 connection errors');
    assert.deepEqual(
      loud().map((line) => [line.level, line.msg]),
      [[50, `redis unreachable: connect ECONNREFUSED 127.0.0.1:${redis.port}`]],
    );

    now += 30_000;
    await log.waitFor(() => loud().length === 2, 'the summary');
    const seen = debugErrors(log.lines);
    await log.waitFor(() => debugErrors(log.lines) >= seen + 20, '20 more connection errors');
    assert.equal(loud().length, 2, 'one summary per interval');
    assert.match(loud()[1]?.msg ?? '', /^redis still unreachable after 30s \(\d+ more connection errors, last: connect ECONNREFUSED/);

    await redis.restart();
    await log.waitFor(() => log.lines.some((line) => line.msg.startsWith('redis reachable again')), 'the recovery line');
    const recovery = log.lines.find((line) => line.msg.startsWith('redis reachable again'));
    assert.equal(recovery?.level, 30);
    assert.equal(recovery?.errors, debugErrors(log.lines));
    assert.equal(loud().length, 2);

    // Errors of another kind are left to the caller; connection errors of other routes are counted.
    assert.equal(outages.absorb(new Error('ERR unknown command'), 'worker'), false);
    assert.equal(outages.absorb(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 'worker'), true);
    assert.equal(loud().length, 3, 'a new outage starts with its own line');
  });

  test('serve: no "Unhandled error event", one error line for an outage, one line when Redis is back', async () => {
    const redis = (started.redis = await PrivateRedis.start());
    const serve = (started.serve = await ServeProcess.start({ REDIS_URL: redis.url, FLAGSTREAM_REDIS_PREFIX: uniquePrefix('outage-log'), FLAGSTREAM_LOG_LEVEL: 'debug', FLAGSTREAM_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'), ADMIN_TOKEN: 'outage-admin' }));
    await serve.waitUntilReady();
    const from = serve.lines.length;
    const since = () => serve.lines.slice(from);

    await redis.kill();
    await serve.waitFor(() => since().some((line) => line.level >= 40), 15_000, 'serve to notice the outage');
    const down = await fetch(`${serve.url}/readyz`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(down.status, 503);
    assert.deepEqual(((await down.json()) as { notReady: string[] }).notReady, ['redis']);
    // However it logs them: at least 20 reports of the refused connections.
    await serve.waitFor(() => since().filter((line) => JSON.stringify(line).includes('ECONNREFUSED')).length >= 20, 15_000, '20 connection errors');
    assert.doesNotMatch(serve.stderr, /Unhandled error event/);
    const loud = since().filter((line) => line.level >= 40);
    assert.equal(loud.length, 1, JSON.stringify(loud));
    // The first error seen: a refused connection, or a write to the socket as Redis went away.
    assert.match(loud[0]?.msg ?? '', /^redis unreachable: /);

    await redis.restart();
    await serve.waitForLine((line) => line.msg.startsWith('redis reachable again'), 15_000, 'the recovery line');
    assert.equal(since().filter((line) => line.level >= 40).length, 1);
    assert.equal(serve.stderr, '');
    const up = await fetch(`${serve.url}/readyz`, { signal: AbortSignal.timeout(10_000) });
    const ready = (await up.json()) as { status: string; checks: unknown };
    assert.deepEqual([up.status, { status: ready.status, checks: ready.checks }], [200, { status: 'ready', checks: { redis: 'ok', workers: 'ok' } }]);
  });
});
