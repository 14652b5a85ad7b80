import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { AppEnv } from '../app-config.js';
import { ConnectorRegistry } from '../connectors/registry.js';
import { DurationSchema } from '../domain/duration.js';
import { AppError } from '../domain/errors.js';
import { createMetrics, type Metrics } from '../observability/metrics.js';
import { createQueues, type Queues } from '../queues/queues.js';
import { type ConfigStore, createConfigStore } from '../stores/config-store.js';
import { createDeadLetterStore, type DeadLetterStore } from '../stores/dead-letter-store.js';
import { createHealthStore, type HealthCache, type HealthStore, healthNoticePrefix } from '../stores/health-store.js';
import { createLedgerStore, type LedgerStore } from '../stores/ledger-store.js';
import { createMonitoringStore, type MonitoringStore } from '../stores/monitoring-store.js';
import { deploymentKeys, partitionedKeys, partitionOf, type RedisKeys } from '../stores/redis-keys.js';
import { createSecretBox } from '../stores/secret-box.js';
import { createStatsStore, type StatsStore } from '../stores/stats-store.js';
import { createStoredBatchStore, type StoredBatchStore } from '../stores/stored-batch-store.js';
import { type ConfigWatcher, startConfigWatcher } from './config-watcher.js';
import { checkPartitionCount } from './partition-count.js';
import { closeConnection, requestConnectionOptions } from './redis-connection.js';
import { duplicateConnection } from './redis-client.js';
import { createRedisOutageLog, type RedisOutageLog } from './redis-outage-log.js';

/** The stores and queues of one partition of the data plane (FLAGSTREAM_REDIS_PARTITIONS), over one Redis connection. */
export interface Stores {
  readonly redis: Redis;
  readonly partition: number;
  /** This partition's keys (data-plane keys under its prefix; control-plane keys as everywhere). */
  readonly dataKeys: RedisKeys;
  readonly configStore: ConfigStore;
  readonly stats: StatsStore;
  readonly monitoring: MonitoringStore;
  readonly deadLetters: DeadLetterStore;
  readonly ledger: LedgerStore;
  readonly health: HealthStore;
  readonly batches: StoredBatchStore;
  readonly queues: Queues;
}

/**
 * The stores of every partition over one connection. Its own fields are partition 0's: the whole
 * data plane when the deployment is not partitioned. Code that reads or writes an environment's
 * data takes `partitionFor(environmentId)`; code about the whole deployment walks `partitions`.
 */
export interface PartitionedStores extends Stores {
  /** Index = partition number. */
  readonly partitions: readonly Stores[];
  partitionFor(environmentId: string): Stores;
}

/** Everything the adapters (api, worker, cli) share, built once from real resources and passed down. */
export interface AppContext extends PartitionedStores {
  readonly env: AppEnv;
  readonly logger: Logger;
  /** Control-plane keys (configuration, plugins, workers, live tail); data-plane keys come from a partition's `dataKeys`. */
  readonly keys: RedisKeys;
  readonly registry: ConnectorRegistry;
  /**
   * The same stores over a connection that never makes an HTTP request wait on Redis (see
   * `requestConnectionOptions`): the API uses these; workers and the CLI use the patient ones.
   */
  readonly serving: PartitionedStores;
  readonly outages: RedisOutageLog;
  readonly config: ConfigWatcher;
  readonly metrics: Metrics;
  readonly clock: () => number;
  close(): Promise<void>;
}

export function durationMs(text: string, name: string): number {
  const parsed = DurationSchema.safeParse(/^\d+$/.test(text) ? Number(text) : text);
  if (!parsed.success) throw new Error(`${name}: expected a duration like 30m, 2h or 14d, got "${text}"`);
  return parsed.data;
}

export async function createAppContext(deps: {
  env: AppEnv;
  logger: Logger;
  redis: Redis;
  registry?: ConnectorRegistry;
  metrics?: Metrics;
  clock?: () => number;
  configPollIntervalMs?: number;
}): Promise<AppContext> {
  const { env, logger, redis } = deps;
  const keys = deploymentKeys(env.FLAGSTREAM_REDIS_PREFIX, redis);
  const partitionCount = env.FLAGSTREAM_REDIS_PARTITIONS;
  await checkPartitionCount(redis, env.FLAGSTREAM_REDIS_PREFIX, partitionCount, { record: true });
  const keysOfPartitions = partitionedKeys(env.FLAGSTREAM_REDIS_PREFIX, redis, partitionCount);
  const registry = deps.registry ?? new ConnectorRegistry();
  const clock = deps.clock ?? Date.now;
  const secrets = createSecretBox(env.FLAGSTREAM_ENCRYPTION_KEY);
  const retentionMs = durationMs(env.FLAGSTREAM_DEAD_LETTER_RETENTION, 'FLAGSTREAM_DEAD_LETTER_RETENTION');
  const minutesMs = durationMs(env.FLAGSTREAM_MONITOR_MINUTES_RETENTION, 'FLAGSTREAM_MONITOR_MINUTES_RETENTION');
  const hoursMs = durationMs(env.FLAGSTREAM_MONITOR_HOURS_RETENTION, 'FLAGSTREAM_MONITOR_HOURS_RETENTION');
  if (hoursMs < minutesMs) throw new AppError('FLAGSTREAM_ERR_CONFIG', 'FLAGSTREAM_MONITOR_HOURS_RETENTION must be at least FLAGSTREAM_MONITOR_MINUTES_RETENTION', { field: 'FLAGSTREAM_MONITOR_HOURS_RETENTION' });
  // Markers and stored batches outlive any retry of the work they belong to (the delivery age bounds those).
  const retainMs = durationMs(env.FLAGSTREAM_MAX_DELIVERY_AGE, 'FLAGSTREAM_MAX_DELIVERY_AGE') + 86_400_000;
  const healthCache: HealthCache = new Map();
  const outages = createRedisOutageLog(logger);
  outages.watch(redis, 'main');
  const partitionOver = (connection: Redis, partition: number, keys: RedisKeys): Stores => {
    const queues = createQueues(connection, keys);
    for (const queue of [queues.ingest, queues.delivery]) {
      // BullMQ forwards its connection's errors to a queue only when someone listens: listen, so that other errors are seen too.
      queue.on('error', (error) => {
        if (!outages.absorb(error, `queue ${queue.name}`)) logger.error({ err: error, queue: queue.name }, 'queue error');
      });
    }
    const monitoring = createMonitoringStore({ redis: connection, keys, clock, retention: { minutesMs, hoursMs } });
    return {
      redis: connection,
      partition,
      dataKeys: keys,
      configStore: createConfigStore({ redis: connection, keys, registry, secrets }),
      stats: createStatsStore({ redis: connection, keys, monitoring }),
      monitoring,
      deadLetters: createDeadLetterStore({ redis: connection, keys, retentionMs, clock }),
      // Markers must outlive every retry of their job, which the delivery age bounds.
      ledger: createLedgerStore({ redis: connection, keys, markerTtlMs: retainMs }),
      health: createHealthStore({ redis: connection, keys, cacheMs: env.FLAGSTREAM_HEALTH_CACHE_MS, clock, cache: healthCache }),
      batches: createStoredBatchStore({ redis: connection, keys, retentionMs: retainMs }),
      queues,
    };
  };
  const storesOver = (connection: Redis): PartitionedStores => {
    const partitions = keysOfPartitions.map((partitionKeys, partition) => partitionOver(connection, partition, partitionKeys));
    const first = partitions[0] as Stores;
    return { ...first, partitions, partitionFor: (environmentId) => partitions[partitionOf(environmentId, partitionCount)] ?? first };
  };
  const patient = storesOver(redis);
  const requestRedis = duplicateConnection(redis, requestConnectionOptions);
  outages.watch(requestRedis, 'requests');
  await requestRedis.connect();
  const serving = storesOver(requestRedis);
  const config = await startConfigWatcher({
    redis,
    keys,
    store: patient.configStore,
    registry,
    logger,
    outages,
    ...(deps.configPollIntervalMs === undefined ? {} : { pollIntervalMs: deps.configPollIntervalMs }),
  });
  // A pause or resume in any process reaches every process's cached health at once.
  config.onNotice((notice) => {
    if (!notice.startsWith(healthNoticePrefix)) return;
    healthCache.delete(notice.slice(healthNoticePrefix.length));
  });
  return {
    env,
    logger,
    ...patient,
    keys,
    registry,
    serving,
    outages,
    config,
    metrics: deps.metrics ?? createMetrics(),
    clock,
    async close() {
      await config.close();
      await Promise.all([...patient.partitions, ...serving.partitions].map((stores) => stores.queues.close()));
      await closeConnection(requestRedis);
    },
  };
}
