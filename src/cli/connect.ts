import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { type AppEnv, readEnv } from '../app-config.js';
import { loadPlugins } from '../connectors/load-plugins.js';
import { ConnectorRegistry } from '../connectors/registry.js';
import { createLogger } from '../observability/logger.js';
import { createQueues, type Queues } from '../queues/queues.js';
import { buildConfigSnapshot, type ConfigSnapshot } from '../runtime/config-snapshot.js';
import { checkPartitionCount } from '../runtime/partition-count.js';
import type { Partitioned } from '../runtime/partitioned-stores.js';
import { createRedisClient } from '../runtime/redis-client.js';
import { connectRedis, type RedisConnection } from '../runtime/redis-connection.js';
import { type ConfigStore, createConfigStore, readPlugins } from '../stores/config-store.js';
import { deploymentKeys, partitionedKeys, partitionOf, type RedisKeys } from '../stores/redis-keys.js';
import { createSecretBox, sealedSecrets } from '../stores/secret-box.js';

/** What a command opens: only what it needs, and all of it closed by `close()`, whatever happens. */
export interface CliSession {
  readonly env: AppEnv;
  readonly logger: Logger;
  readonly redis: Redis;
  /** Control-plane keys (configuration, plugins); data-plane keys come from `partitionKeys`. */
  readonly keys: RedisKeys;
  /** The keys of each partition of the data plane (FLAGSTREAM_REDIS_PARTITIONS; index = partition number). */
  readonly partitionKeys: readonly RedisKeys[];
  /** Stores built per partition by `build`, and the partition of an environment. */
  partitioned<T>(build: (keys: RedisKeys, partition: number) => T): Partitioned<T>;
  readonly registry: ConnectorRegistry;
  readonly configStore: ConfigStore;
  /** The configuration as stored now (read once: a command does not follow changes). */
  snapshot(): Promise<ConfigSnapshot>;
  /** The queues of a partition (opened on first use). */
  queues(partition: number): Queues;
  close(): Promise<void>;
}

export interface SessionNeeds {
  /** Decrypts stored secrets (FLAGSTREAM_ENCRYPTION_KEY needed when they are encrypted); otherwise they stay sealed and the configuration is read-only. */
  readonly secrets: boolean;
  /** Connector plugins: false for the built-in connectors only; else those stored by `apply`, plus these. */
  readonly plugins: readonly string[] | false;
}

/** Commands log warnings and worse on stderr, unless FLAGSTREAM_LOG_LEVEL asks for more (debug) or less. */
export function cliLogLevel(level: string | undefined): string {
  return level === 'debug' || level === 'trace' || level === 'error' || level === 'fatal' || level === 'silent' ? level : 'warn';
}

/** Where `serve` notes the URL of its private redis-server, so other commands find it. */
function privateUrlFile(env: AppEnv): string {
  return join(dirname(env.FLAGSTREAM_REDIS_DIR), 'redis.url');
}

/** REDIS_URL, else the private Redis a local `serve` noted, else the standard one. */
function cliRedisUrl(env: AppEnv): string | undefined {
  const noted = privateUrlFile(env);
  return env.REDIS_URL ?? (existsSync(noted) ? readFileSync(noted, 'utf8').trim() : undefined);
}

/** Connects the way `serve` does; only `serve` may start a private redis-server (and notes its URL). */
export async function connect(env: AppEnv, logger: Logger, serving: boolean): Promise<RedisConnection> {
  const url = serving ? env.REDIS_URL : cliRedisUrl(env);
  const connection = await connectRedis({ url, dataDir: env.FLAGSTREAM_REDIS_DIR, logger, allowChild: serving }).catch(async (error: unknown) => {
    // A noted URL of a serve that has since stopped: fall back to the standard places.
    if (url !== env.REDIS_URL) return connectRedis({ url: env.REDIS_URL, dataDir: env.FLAGSTREAM_REDIS_DIR, logger, allowChild: false });
    throw error;
  });
  if (connection.child === undefined) return connection;
  const noted = privateUrlFile(env);
  writeFileSync(noted, connection.url);
  return {
    ...connection,
    async close() {
      await connection.close();
      rmSync(noted, { force: true });
    },
  };
}

export async function openSession(needs: SessionNeeds): Promise<CliSession> {
  const env = readEnv();
  const logger = createLogger(cliLogLevel(env.FLAGSTREAM_LOG_LEVEL), process.stderr, env.FLAGSTREAM_LOG_FORMAT);
  // A malformed key is refused before anything is opened.
  const secrets = needs.secrets ? createSecretBox(env.FLAGSTREAM_ENCRYPTION_KEY) : sealedSecrets;
  const connection = await connect(env, logger, false);
  const queues = new Map<number, Queues>();
  try {
    const keys = deploymentKeys(env.FLAGSTREAM_REDIS_PREFIX, connection.redis);
    const partitions = env.FLAGSTREAM_REDIS_PARTITIONS;
    // A command run with another count than the deployment's would read and write the wrong partitions.
    await checkPartitionCount(connection.redis, env.FLAGSTREAM_REDIS_PREFIX, partitions, { record: false });
    const partitionKeys = partitionedKeys(env.FLAGSTREAM_REDIS_PREFIX, connection.redis, partitions);
    const registry = new ConnectorRegistry();
    if (needs.plugins !== false) {
      // Plugins stored by an earlier apply, plus those of the file being applied now.
      const plugins = [...new Set([...(await readPlugins(connection.redis, keys)), ...needs.plugins])];
      for (const connector of await loadPlugins(plugins)) registry.register(connector);
      if (plugins.length > 0) logger.info({ plugins }, `loaded ${plugins.length} connector plugin(s)`);
    }
    const configStore = createConfigStore({ redis: connection.redis, keys, registry, secrets });
    return {
      env,
      logger,
      redis: connection.redis,
      keys,
      partitionKeys,
      partitioned(build) {
        const built = partitionKeys.map((partitionKey, partition) => build(partitionKey, partition));
        return { partitions: built, partitionFor: (environmentId) => built[partitionOf(environmentId, partitions)] as (typeof built)[number] };
      },
      registry,
      configStore,
      async snapshot() {
        const version = await configStore.version();
        return buildConfigSnapshot(await configStore.listEnvironments(), registry, version);
      },
      queues(partition) {
        const partitionKey = partitionKeys[partition];
        if (partitionKey === undefined) throw new Error(`no partition ${partition}`);
        let opened = queues.get(partition);
        if (opened === undefined) queues.set(partition, (opened = createQueues(connection.redis, partitionKey)));
        return opened;
      },
      async close() {
        await Promise.all([...queues.values()].map((opened) => opened.close()));
        await connection.close();
      },
    };
  } catch (error) {
    await connection.close();
    throw error;
  }
}

/**
 * The plugins `apply` stored, when a Redis answers within a second; undefined otherwise. For
 * `connectors`, which needs no Redis: it lists the built-in connectors without one.
 */
export async function storedPluginsIfReachable(env: AppEnv): Promise<string[] | undefined> {
  const client = createRedisClient(cliRedisUrl(env) ?? 'redis://127.0.0.1:6379', { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await readPlugins(client, deploymentKeys(env.FLAGSTREAM_REDIS_PREFIX, client));
  } catch {
    return undefined;
  } finally {
    client.disconnect();
  }
}
