import type { Redis } from 'ioredis';
import type { ConnectorRegistry } from '../connectors/registry.js';
import { type Destination, type Environment, EnvironmentSchema } from '../domain/configuration.js';
import { AppError } from '../domain/errors.js';
import { redactValue } from '../observability/redact.js';
import { duplicateConnection } from '../runtime/redis-client.js';
import type { RedisKeys } from './redis-keys.js';
import type { SecretBox } from './secret-box.js';

/**
 * The configuration lives in Redis beside the queues: one hash field per environment (its flags
 * and destinations inside), secrets sealed by the SecretBox, and a version counter bumped (and
 * published) on every change so running processes reload within seconds.
 */
/** What one transaction writes: environments by id (undefined deletes) and, when set, the plugin list. */
export interface ConfigWrite {
  readonly environments: ReadonlyMap<string, Environment | undefined>;
  readonly plugins?: readonly string[] | undefined;
}

export interface ConfigStore {
  listEnvironments(): Promise<Environment[]>;
  getEnvironment(id: string): Promise<Environment | undefined>;
  /** Without reading (or decrypting) it. */
  hasEnvironment(id: string): Promise<boolean>;
  /**
   * Reads the whole configuration, lets `change` decide what to write, and writes all of it in
   * one transaction, or nothing: retried when another writer got in between, so `change` may
   * run more than once and must only compute.
   */
  transact<T>(change: (environments: Environment[], plugins: string[]) => { write?: ConfigWrite | undefined; result: T }): Promise<T>;
  /** Read-modify-write of one environment, safe against concurrent writers. Returns the new value. */
  updateEnvironment(id: string, change: (current: Environment | undefined) => Environment | undefined): Promise<Environment | undefined>;
  version(): Promise<number>;
  /** Connector plugins every process loads at start (absolute paths or package names). */
  listPlugins(): Promise<string[]>;
  setPlugins(plugins: readonly string[]): Promise<void>;
}

type SecretMapper = (value: unknown) => unknown;

/** Applies `map` to every secret of an environment: SDK keys, the webhook token, connector secret settings. */
export function mapSecrets(environment: Environment, registry: ConnectorRegistry, map: SecretMapper): Environment {
  return {
    ...environment,
    sdkKeys: environment.sdkKeys.map((key) => map(key) as string),
    ...(environment.webhookToken === undefined ? {} : { webhookToken: map(environment.webhookToken) as string }),
    destinations: environment.destinations.map((destination) => mapDestinationSecrets(destination, registry, map)),
  };
}

export function mapDestinationSecrets(destination: Destination, registry: ConnectorRegistry, map: SecretMapper): Destination {
  const secretKeys = registry.get(destination.type)?.secretSettings ?? [];
  const settings: Record<string, unknown> = { ...destination.settings };
  for (const key of secretKeys) if (settings[key] !== undefined) settings[key] = map(settings[key]);
  return { ...destination, settings };
}

export function redactEnvironment(environment: Environment, registry: ConnectorRegistry): Environment {
  return mapSecrets(environment, registry, redactValue);
}

export function redactDestination(destination: Destination, registry: ConnectorRegistry): Destination {
  return mapDestinationSecrets(destination, registry, redactValue);
}

/** Read before the registry exists (the registry needs the plugins), hence a plain function. */
export async function readPlugins(redis: Redis, keys: RedisKeys): Promise<string[]> {
  const raw = await redis.get(keys.configPlugins);
  const parsed: unknown = raw === null ? [] : JSON.parse(raw);
  return Array.isArray(parsed) ? parsed.filter((p): p is string => typeof p === 'string') : [];
}

export function createConfigStore(deps: { redis: Redis; keys: RedisKeys; registry: ConnectorRegistry; secrets: SecretBox }): ConfigStore {
  const { redis, keys, registry, secrets } = deps;

  const decode = (raw: string): Environment => {
    const stored = EnvironmentSchema.safeParse(JSON.parse(raw));
    if (!stored.success) {
      const issue = stored.error.issues[0];
      throw new AppError('FLAGSTREAM_ERR_CONFIG', `a stored environment cannot be read (${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}); fix it with \`flagstream apply\``);
    }
    return mapSecrets(stored.data, registry, (value) => secrets.open(value));
  };
  const encode = (environment: Environment): string => JSON.stringify(mapSecrets(environment, registry, (value) => secrets.seal(value)));

  return {
    async listEnvironments() {
      const all = await redis.hgetall(keys.configEnvironments);
      return Object.values(all)
        .map(decode)
        .sort((a, b) => a.id.localeCompare(b.id));
    },
    async getEnvironment(id) {
      const raw = await redis.hget(keys.configEnvironments, id);
      return raw === null ? undefined : decode(raw);
    },
    async hasEnvironment(id) {
      return (await redis.hexists(keys.configEnvironments, id)) === 1;
    },
    async transact(change) {
      for (let attempt = 0; attempt < 20; attempt += 1) {
        // WATCH needs a connection of its own; it may be used before it has connected.
        const connection = duplicateConnection(redis, { enableOfflineQueue: true });
        connection.on('error', () => undefined);
        try {
          await connection.watch(keys.configEnvironments, keys.configPlugins);
          const [all, plugins] = await Promise.all([connection.hgetall(keys.configEnvironments), readPlugins(connection, keys)]);
          const environments = Object.values(all)
            .map(decode)
            .sort((a, b) => a.id.localeCompare(b.id));
          const { write, result } = change(environments, plugins);
          if (write === undefined || (write.environments.size === 0 && write.plugins === undefined)) return result;
          const transaction = connection.multi();
          for (const [id, environment] of write.environments) {
            if (environment === undefined) transaction.hdel(keys.configEnvironments, id);
            else transaction.hset(keys.configEnvironments, id, encode(environment));
          }
          if (write.plugins !== undefined) transaction.set(keys.configPlugins, JSON.stringify([...write.plugins]));
          transaction.incr(keys.configVersion);
          if ((await transaction.exec()) !== null) {
            await redis.publish(keys.configChannel, 'apply');
            return result;
          }
        } finally {
          connection.disconnect();
        }
      }
      throw new AppError('FLAGSTREAM_ERR_CONFLICT', 'the configuration is being changed by others; try again');
    },
    async updateEnvironment(id, change) {
      for (let attempt = 0; attempt < 20; attempt += 1) {
        // WATCH needs a connection of its own: a shared one would watch for other callers too.
        // It queues commands until it is connected (a request connection refuses them offline);
        // its errors reach the caller as the commands' rejections, hence the quiet listener.
        const connection = duplicateConnection(redis, { enableOfflineQueue: true });
        connection.on('error', () => undefined);
        try {
          await connection.watch(keys.configEnvironments);
          const raw = await connection.hget(keys.configEnvironments, id);
          const next = change(raw === null ? undefined : decode(raw));
          const transaction = connection.multi();
          if (next === undefined) transaction.hdel(keys.configEnvironments, id);
          else transaction.hset(keys.configEnvironments, id, encode(next));
          transaction.incr(keys.configVersion);
          const result = await transaction.exec();
          if (result !== null) {
            await redis.publish(keys.configChannel, id);
            return next;
          }
        } finally {
          connection.disconnect();
        }
      }
      throw new AppError('FLAGSTREAM_ERR_CONFLICT', `environment "${id}" is being changed by others; try again`);
    },
    async version() {
      return Number((await redis.get(keys.configVersion)) ?? 0);
    },
    async listPlugins() {
      return readPlugins(redis, keys);
    },
    async setPlugins(plugins) {
      await redis.multi().set(keys.configPlugins, JSON.stringify([...plugins])).incr(keys.configVersion).exec();
      await redis.publish(keys.configChannel, 'plugins');
    },
  };
}
