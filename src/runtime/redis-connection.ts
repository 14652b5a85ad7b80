import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { AppError } from '../domain/errors.js';
import { createRedisClient, isClusterUrl, masterNodes, redactRedisUrl } from './redis-client.js';
import { settlesWithin } from './settles-within.js';

export interface RedisConnection {
  /** A `Cluster` (typed as `Redis`, see redis-client.ts) when `url` is a `redis+cluster://` one. */
  readonly redis: Redis;
  readonly url: string;
  /** Set when flagstream started its own redis-server. */
  readonly child: ChildProcess | undefined;
  close(): Promise<void>;
}

const standardUrl = 'redis://127.0.0.1:6379';

/** How long a command issued while serving an HTTP request may wait for Redis' answer. */
export const requestCommandTimeoutMs = 2000;

/**
 * Options of the connection HTTP handlers use (a duplicate of the main one): a request never
 * waits for a reconnect (no offline queue: commands fail at once while Redis is unreachable)
 * nor on a Redis that stopped answering (command timeout). The main connection stays patient:
 * BullMQ's workers need commands to wait for a reconnect (`maxRetriesPerRequest: null`), and its
 * blocking commands, on duplicates of it, must have no timeout.
 */
export const requestConnectionOptions = { lazyConnect: true, enableOfflineQueue: false, commandTimeout: requestCommandTimeoutMs, maxRetriesPerRequest: 0 } as const;

/** How long closing waits for QUIT (pending replies) and for a private redis-server to stop. */
const quitTimeoutMs = 1000;
const childStopTimeoutMs = 3000;

/** Closes `redis` politely when it answers, at once when it does not (QUIT would wait for a reconnect). */
export async function closeConnection(redis: Redis): Promise<void> {
  if (redis.status === 'ready') await settlesWithin(redis.quit(), quitTimeoutMs);
  redis.disconnect();
}

function client(url: string, probing: boolean): Redis {
  return createRedisClient(url, {
    // BullMQ needs commands to wait for a reconnect instead of failing.
    maxRetriesPerRequest: probing ? 1 : null,
    connectTimeout: probing ? 1000 : 10_000,
    lazyConnect: true,
    ...(probing ? { retryStrategy: () => null } : {}),
  });
}

/** Whether a Redis answers PING at `url` now (one short attempt; LOADING counts as not yet). */
export async function redisAnswers(url: string): Promise<boolean> {
  const probe = client(url, true);
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

/** A TCP port free on 127.0.0.1 right now (for a private redis-server; tests and the benchmark use it too). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

/** BullMQ loses jobs when Redis evicts keys: refuse anything but `noeviction` (on every master of a Cluster). */
export async function assertNoEviction(redis: Redis, url: string): Promise<void> {
  const infos = await Promise.all(masterNodes(redis).map((node) => node.info('memory')));
  const policy = infos.map((info) => /maxmemory_policy:(\S+)/.exec(info)?.[1]).find((found) => found !== undefined && found !== 'noeviction');
  if (policy !== undefined) {
    throw new AppError(
      'FLAGSTREAM_ERR_CONFIG',
      `Redis at ${redactUrl(url)} has maxmemory-policy "${policy}"; flagstream (BullMQ) needs "noeviction" so queued impressions are never evicted. ` +
        'Run `redis-cli config set maxmemory-policy noeviction` (and set it in redis.conf), or point REDIS_URL at another Redis.',
    );
  }
}

export function redactUrl(url: string): string {
  if (isClusterUrl(url)) return redactRedisUrl(url);
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'the configured Redis';
  }
}

/**
 * REDIS_URL when set; else 127.0.0.1:6379 when something answers there; else a private
 * `redis-server` child with its data under `dataDir`, stopped with flagstream.
 */
export async function connectRedis(options: {
  url: string | undefined;
  dataDir: string;
  logger: Logger;
  allowChild: boolean;
  /** Where to look first when no URL is given (tests point it at a closed port). */
  defaultUrl?: string;
}): Promise<RedisConnection> {
  const defaultUrl = options.defaultUrl ?? standardUrl;
  let url = options.url;
  let child: ChildProcess | undefined;
  if (url === undefined) {
    if (await redisAnswers(defaultUrl)) {
      url = defaultUrl;
    } else if (!options.allowChild) {
      throw new AppError('FLAGSTREAM_ERR_REDIS', 'no Redis answers on 127.0.0.1:6379; start one or set REDIS_URL=redis://host:6379');
    } else {
      ({ url, child } = await startPrivateRedis(options.dataDir, options.logger));
    }
  } else if (!(await redisAnswers(url))) {
    throw new AppError('FLAGSTREAM_ERR_REDIS', `cannot reach Redis at ${redactUrl(url)} (REDIS_URL); is it running?`);
  }
  const redis = client(url, false);
  // Only so that ioredis does not print "Unhandled error event": the context's outage log reports them (runtime/redis-outage-log.ts).
  redis.on('error', () => undefined);
  await redis.connect();
  try {
    await assertNoEviction(redis, url);
  } catch (error) {
    redis.disconnect();
    child?.kill('SIGTERM');
    throw error;
  }
  return {
    redis,
    url,
    child,
    async close() {
      await closeConnection(redis);
      if (child !== undefined && child.exitCode === null) {
        const exited = new Promise((done) => child?.once('exit', done));
        child.kill('SIGTERM');
        // A redis-server that does not stop on SIGTERM is wedged (appendonly keeps all but its last second).
        if (!(await settlesWithin(exited, childStopTimeoutMs))) child.kill('SIGKILL');
      }
    },
  };
}

async function startPrivateRedis(dataDir: string, logger: Logger): Promise<{ url: string; child: ChildProcess }> {
  const found = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (found.error !== undefined || found.status !== 0) {
    throw new AppError(
      'FLAGSTREAM_ERR_REDIS',
      'No Redis answers on 127.0.0.1:6379 and no `redis-server` is installed to start a private one.\n' +
        '  Install Redis (Debian/Ubuntu: `sudo apt-get install redis-server`; macOS: `brew install redis`),\n' +
        '  or point flagstream at an existing one: `REDIS_URL=redis://host:6379 npx flagstream serve`,\n' +
        '  or run the whole stack with `docker compose up`.',
    );
  }
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', '', '--maxmemory-policy', 'noeviction'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `redis://127.0.0.1:${port}`;
  for (let tries = 0; tries < 100; tries += 1) {
    if (child.exitCode !== null) break;
    if (await redisAnswers(url)) {
      logger.info({ url, dataDir: dir }, `no Redis on 127.0.0.1:6379: started a private redis-server on port ${port} (data in ${dir}); it stops with flagstream`);
      return { url, child };
    }
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new AppError('FLAGSTREAM_ERR_REDIS', `the private redis-server did not start (data folder ${dir})`);
}
