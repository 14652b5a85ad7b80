import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ConnectorRegistry } from '../connectors/registry.js';
import type { ConfigStore } from '../stores/config-store.js';
import type { RedisKeys } from '../stores/redis-keys.js';
import { buildConfigSnapshot, type ConfigSnapshot } from './config-snapshot.js';
import { duplicateConnection } from './redis-client.js';
import type { RedisOutageLog } from './redis-outage-log.js';

export interface ConfigWatcher {
  current(): ConfigSnapshot;
  /** Reloads now if the stored version moved; resolves with the snapshot in force. */
  refresh(): Promise<ConfigSnapshot>;
  /** Calls `listener` after each reload; returns a function that stops it. */
  onChange(listener: (snapshot: ConfigSnapshot) => void): () => void;
  /** Calls `listener` with every notice on the change channel (configuration, health), before the reload it triggers. */
  onNotice(listener: (notice: string) => void): void;
  close(): Promise<void>;
}

/**
 * Keeps an up-to-date snapshot of the configuration: reloads on the change channel, and polls
 * the version as a fallback (a missed pub/sub message costs at most one poll interval).
 */
export async function startConfigWatcher(deps: {
  redis: Redis;
  keys: RedisKeys;
  store: ConfigStore;
  registry: ConnectorRegistry;
  logger: Logger;
  outages: RedisOutageLog;
  pollIntervalMs?: number;
}): Promise<ConfigWatcher> {
  const { redis, keys, store, registry, logger } = deps;
  const listeners: ((snapshot: ConfigSnapshot) => void)[] = [];
  const load = async (): Promise<ConfigSnapshot> => {
    const version = await store.version();
    return buildConfigSnapshot(await store.listEnvironments(), registry, version);
  };
  let snapshot = await load();
  let reloading: Promise<ConfigSnapshot> | undefined;

  const refresh = async (): Promise<ConfigSnapshot> => {
    if (reloading) return reloading;
    reloading = (async () => {
      try {
        const version = await store.version();
        if (version !== snapshot.version) {
          snapshot = await load();
          logger.info({ version: snapshot.version }, 'configuration reloaded');
          for (const listener of listeners) listener(snapshot);
        }
        return snapshot;
      } finally {
        reloading = undefined;
      }
    })();
    return reloading;
  };
  let closed = false;
  const refreshQuietly = () => {
    if (closed) return;
    // A reload cut short by close() (the connection going away) is not a failure worth a warning.
    refresh().catch((error: unknown) => {
      if (!closed) logger.warn({ err: error }, 'configuration reload failed; keeping the previous one');
    });
  };

  const subscriber = duplicateConnection(redis);
  deps.outages.watch(subscriber, 'config subscriber');
  await subscriber.subscribe(keys.configChannel);
  const noticeListeners: ((notice: string) => void)[] = [];
  subscriber.on('message', (_channel: string, notice: string) => {
    for (const listener of noticeListeners) listener(notice);
    refreshQuietly();
  });
  const poll = setInterval(refreshQuietly, deps.pollIntervalMs ?? 2000);
  poll.unref();

  return {
    current: () => snapshot,
    onNotice: (listener) => {
      noticeListeners.push(listener);
    },
    refresh,
    onChange: (listener) => {
      listeners.push(listener);
      return () => {
        const index = listeners.indexOf(listener);
        if (index >= 0) listeners.splice(index, 1);
      };
    },
    async close() {
      closed = true;
      clearInterval(poll);
      subscriber.disconnect();
      // A reload in progress is not waited for: during a Redis outage it would wait for Redis
      // (and `closed` keeps its failure quiet).
    },
  };
}
