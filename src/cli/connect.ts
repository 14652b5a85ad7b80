import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { type AppEnv, readEnv } from '../app-config.js';
import { createLogger } from '../observability/logger.js';
import { loadPlugins } from '../connectors/load-plugins.js';
import { ConnectorRegistry } from '../connectors/registry.js';
import { type AppContext, createAppContext } from '../runtime/app-context.js';
import { readPlugins } from '../stores/config-store.js';
import { redisKeys } from '../stores/redis-keys.js';
import { connectRedis, type RedisConnection } from '../runtime/redis-connection.js';

export interface CliSession {
  readonly env: AppEnv;
  readonly logger: Logger;
  readonly connection: RedisConnection;
  readonly ctx: AppContext;
  close(): Promise<void>;
}

/** Where `serve` notes the URL of its private redis-server, so other commands find it. */
function privateUrlFile(env: AppEnv): string {
  return join(dirname(env.FLAGSTREAM_REDIS_DIR), 'redis.url');
}

/** Connects the way `serve` does; commands other than serve never start a Redis of their own. */
export async function openSession(options: { serving: boolean; logLevel?: string; plugins?: readonly string[] }): Promise<CliSession> {
  const env = readEnv();
  const logger = createLogger(options.logLevel ?? env.FLAGSTREAM_LOG_LEVEL, options.serving ? process.stdout : process.stderr, env.FLAGSTREAM_LOG_FORMAT);
  let url = env.REDIS_URL;
  const noted = privateUrlFile(env);
  if (url === undefined && !options.serving && existsSync(noted)) url = readFileSync(noted, 'utf8').trim();
  const connection = await connectRedis({ url, dataDir: env.FLAGSTREAM_REDIS_DIR, logger, allowChild: options.serving }).catch(async (error: unknown) => {
    if (url !== env.REDIS_URL) return connectRedis({ url: env.REDIS_URL, dataDir: env.FLAGSTREAM_REDIS_DIR, logger, allowChild: false });
    throw error;
  });
  if (connection.child !== undefined) writeFileSync(noted, connection.url);
  // Plugins stored by an earlier apply, plus those of the file being applied now.
  const plugins = [...new Set([...(await readPlugins(connection.redis, redisKeys(env.FLAGSTREAM_REDIS_PREFIX))), ...(options.plugins ?? [])])];
  const registry = new ConnectorRegistry();
  try {
    for (const connector of await loadPlugins(plugins)) registry.register(connector);
  } catch (error) {
    await connection.close();
    throw error;
  }
  if (plugins.length > 0) logger.info({ plugins }, `loaded ${plugins.length} connector plugin(s)`);
  const ctx = await createAppContext({ env, logger, redis: connection.redis, registry });
  return {
    env,
    logger,
    connection,
    ctx,
    async close() {
      await ctx.close();
      await connection.close();
      if (connection.child !== undefined) rmSync(noted, { force: true });
    },
  };
}
