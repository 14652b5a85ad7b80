import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { connectRedis } from '../../src/runtime/redis-connection.js';

const logger = pino({ level: 'silent' });
const nothingListens = 'redis://127.0.0.1:1';

describe('Redis at start: REDIS_URL, else 127.0.0.1:6379, else a private redis-server child', () => {
  test('starts a private redis-server (appendonly, noeviction) when nothing answers, and stops it on close', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'flagstream-redis-'));
    const connection = await connectRedis({ url: undefined, defaultUrl: nothingListens, dataDir, logger, allowChild: true });
    try {
      assert.ok(connection.child, 'a child was started');
      assert.equal(await connection.redis.ping(), 'PONG');
      assert.deepEqual(await connection.redis.config('GET', 'appendonly'), ['appendonly', 'yes']);
    } finally {
      const child = connection.child;
      await connection.close();
      assert.notEqual(child?.exitCode ?? child?.signalCode, null);
    }
  });

  test('says how to install Redis or set REDIS_URL when no redis-server is installed', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      await assert.rejects(connectRedis({ url: undefined, defaultUrl: nothingListens, dataDir: tmpdir(), logger, allowChild: true }), (error: Error) => {
        assert.match(error.message, /no `redis-server` is installed/);
        assert.match(error.message, /apt-get install redis-server/);
        assert.match(error.message, /REDIS_URL=redis:\/\/host:6379/);
        return true;
      });
    } finally {
      process.env.PATH = path;
    }
  });

  test('names the unreachable REDIS_URL without its password', async () => {
    await assert.rejects(connectRedis({ url: 'redis://:hunter2@127.0.0.1:1', dataDir: tmpdir(), logger, allowChild: true }), (error: Error) => {
      assert.match(error.message, /cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1/);
      assert.doesNotMatch(error.message, /hunter2/);
      return true;
    });
  });

  test('refuses a Redis whose maxmemory-policy is not noeviction', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'flagstream-redis-'));
    const connection = await connectRedis({ url: undefined, defaultUrl: nothingListens, dataDir, logger, allowChild: true });
    try {
      await connection.redis.config('SET', 'maxmemory-policy', 'allkeys-lru');
      await assert.rejects(connectRedis({ url: connection.url, dataDir, logger, allowChild: false }), /maxmemory-policy "allkeys-lru".*noeviction/s);
    } finally {
      await connection.close();
    }
  });
});
