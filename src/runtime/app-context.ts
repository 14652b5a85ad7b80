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
import { createHealthStore, type HealthStore } from '../stores/health-store.js';
import { createLedgerStore, type LedgerStore } from '../stores/ledger-store.js';
import { createMonitoringStore, type MonitoringStore } from '../stores/monitoring-store.js';
import { redisKeys, type RedisKeys } from '../stores/redis-keys.js';
import { createSecretBox } from '../stores/secret-box.js';
import { createStatsStore, type StatsStore } from '../stores/stats-store.js';
import { type ConfigWatcher, startConfigWatcher } from './config-watcher.js';

/** Everything the adapters (api, worker, cli) share, built once from real resources and passed down. */
export interface AppContext {
  readonly env: AppEnv;
  readonly logger: Logger;
  readonly redis: Redis;
  readonly keys: RedisKeys;
  readonly registry: ConnectorRegistry;
  readonly configStore: ConfigStore;
  readonly stats: StatsStore;
  readonly monitoring: MonitoringStore;
  readonly deadLetters: DeadLetterStore;
  readonly ledger: LedgerStore;
  readonly health: HealthStore;
  readonly queues: Queues;
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
  const keys = redisKeys(env.FLAGSTREAM_REDIS_PREFIX);
  const registry = deps.registry ?? new ConnectorRegistry();
  const clock = deps.clock ?? Date.now;
  const secrets = createSecretBox(env.FLAGSTREAM_ENCRYPTION_KEY);
  const minutesMs = durationMs(env.FLAGSTREAM_MONITOR_MINUTES_RETENTION, 'FLAGSTREAM_MONITOR_MINUTES_RETENTION');
  const hoursMs = durationMs(env.FLAGSTREAM_MONITOR_HOURS_RETENTION, 'FLAGSTREAM_MONITOR_HOURS_RETENTION');
  if (hoursMs < minutesMs) throw new AppError('FLAGSTREAM_ERR_CONFIG', 'FLAGSTREAM_MONITOR_HOURS_RETENTION must be at least FLAGSTREAM_MONITOR_MINUTES_RETENTION', { field: 'FLAGSTREAM_MONITOR_HOURS_RETENTION' });
  const configStore = createConfigStore({ redis, keys, registry, secrets });
  const queues = createQueues(redis, keys);
  const config = await startConfigWatcher({
    redis,
    keys,
    store: configStore,
    registry,
    logger,
    ...(deps.configPollIntervalMs === undefined ? {} : { pollIntervalMs: deps.configPollIntervalMs }),
  });
  const monitoring = createMonitoringStore({ redis, keys, clock, retention: { minutesMs, hoursMs } });
  return {
    env,
    logger,
    redis,
    keys,
    registry,
    configStore,
    stats: createStatsStore({ redis, keys, monitoring }),
    monitoring,
    // Markers must outlive every retry of their job, which the delivery age bounds.
    ledger: createLedgerStore({ redis, keys, markerTtlMs: durationMs(env.FLAGSTREAM_MAX_DELIVERY_AGE, 'FLAGSTREAM_MAX_DELIVERY_AGE') + 86_400_000 }),
    deadLetters: createDeadLetterStore({ redis, keys, retentionMs: durationMs(env.FLAGSTREAM_DEAD_LETTER_RETENTION, 'FLAGSTREAM_DEAD_LETTER_RETENTION'), clock }),
    health: createHealthStore({ redis, keys }),
    queues,
    config,
    metrics: deps.metrics ?? createMetrics(),
    clock,
    async close() {
      await config.close();
      await queues.close();
    },
  };
}
