import type { FastifyInstance } from 'fastify';
import { createConfigService } from '../../admin/config-service.js';
import { loadConfigFile, pluginsOf } from '../../admin/load-config-file.js';
import { buildServer } from '../../api/build-server.js';
import { readEnv } from '../../app-config.js';
import { loadPlugins } from '../../connectors/load-plugins.js';
import { ConnectorRegistry } from '../../connectors/registry.js';
import { AppError } from '../../domain/errors.js';
import { createLogger } from '../../observability/logger.js';
import { type AppContext, createAppContext } from '../../runtime/app-context.js';
import { readPlugins } from '../../stores/config-store.js';
import { redisKeys } from '../../stores/redis-keys.js';
import { createSecretBox } from '../../stores/secret-box.js';
import { type RunningWorkers, startWorkers } from '../../worker/start-workers.js';
import { connect } from '../connect.js';
import { locate } from './config-commands.js';

export type Role = 'all' | 'api' | 'worker';

/** `flagstream serve`: API and workers in one process, or one role so each scales on its own. */
export async function serve(options: { role: Role; config?: string; port?: number }): Promise<void> {
  const env = readEnv();
  const logger = createLogger(env.FLAGSTREAM_LOG_LEVEL, process.stdout);
  // A malformed key is refused before anything is opened; a wrong one when the configuration is first read.
  createSecretBox(env.FLAGSTREAM_ENCRYPTION_KEY);
  const configPath = options.config ?? env.FLAGSTREAM_CONFIG;
  const file = configPath === undefined ? undefined : await loadConfigFile(configPath);
  const connection = await connect(env, logger, true);
  let ctx: AppContext | undefined;
  let server: FastifyInstance | undefined;
  try {
    const registry = new ConnectorRegistry();
    const plugins = [...new Set([...(await readPlugins(connection.redis, redisKeys(env.FLAGSTREAM_REDIS_PREFIX))), ...pluginsOf(file?.data)])];
    for (const connector of await loadPlugins(plugins)) registry.register(connector);
    if (plugins.length > 0) logger.info({ plugins }, `loaded ${plugins.length} connector plugin(s)`);
    ctx = await createAppContext({ env, logger, redis: connection.redis, registry });
    if (file !== undefined) {
      const changes = await createConfigService({ store: ctx.configStore, registry: ctx.registry }).apply(file.data, { inputProblems: file.problems }).catch(locate(file));
      await ctx.config.refresh();
      logger.info({ file: configPath, changes: changes.length }, changes.length === 0 ? 'configuration file applied: no changes' : `configuration file applied: ${changes.length} change(s)`);
    }
    if (env.FLAGSTREAM_ENCRYPTION_KEY === undefined) logger.warn('FLAGSTREAM_ENCRYPTION_KEY is not set: destination secrets are stored unencrypted in Redis');
    // Listen before the workers start: a port already taken ends the process instead of leaving a headless worker.
    if (options.role !== 'worker') {
      if (env.ADMIN_TOKEN === undefined) logger.warn('ADMIN_TOKEN is not set: the admin API (/admin/v1) answers 401');
      server = buildServer(ctx);
      const port = options.port ?? env.PORT;
      const address = await server.listen({ port, host: env.HOST }).catch((error: unknown) => {
        if ((error as { code?: string }).code === 'EADDRINUSE') {
          throw new AppError('FLAGSTREAM_ERR_CONFIG', `port ${port} on ${env.HOST} is already in use: stop what listens there, or choose another port with --port or PORT`, { field: 'PORT', cause: error });
        }
        throw error;
      });
      logger.info({ address, role: options.role }, `flagstream listening on ${address}`);
    }
  } catch (error) {
    await server?.close().catch(() => undefined);
    await ctx?.close().catch(() => undefined);
    await connection.close().catch(() => undefined);
    throw error;
  }
  const context = ctx;
  const session = {
    async close() {
      await context.close();
      await connection.close();
    },
  };
  let workers: RunningWorkers | undefined;
  if (options.role !== 'api') workers = startWorkers(context);
  if (options.role === 'worker') logger.info({ role: options.role }, 'flagstream worker started');

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    await server?.close();
    await workers?.close();
    await session.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}
