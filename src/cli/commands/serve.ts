import type { FastifyInstance } from 'fastify';
import { createConfigService } from '../../admin/config-service.js';
import { createDestinationGuard } from '../../delivery/destination-guard.js';
import { loadConfigFile, pluginsOf } from '../../admin/load-config-file.js';
import { buildServer } from '../../api/build-server.js';
import { readEnv } from '../../app-config.js';
import { type RunningWorkers, startWorkers } from '../../worker/start-workers.js';
import { openSession } from '../connect.js';

export type Role = 'all' | 'api' | 'worker';

/** `flagstream serve`: API and workers in one process, or one role so each scales on its own. */
export async function serve(options: { role: Role; config?: string; port?: number }): Promise<void> {
  const configPath = options.config ?? readEnv().FLAGSTREAM_CONFIG;
  const file = configPath === undefined ? undefined : await loadConfigFile(configPath);
  const session = await openSession({ serving: true, plugins: pluginsOf(file) });
  const { ctx, env, logger } = session;
  if (file !== undefined) {
    const changes = await createConfigService({ store: ctx.configStore, registry: ctx.registry, destinationGuard: createDestinationGuard(ctx.env.FLAGSTREAM_DESTINATION_ALLOWLIST) }).apply(file);
    await ctx.config.refresh();
    logger.info({ file: configPath, changes: changes.length }, changes.length === 0 ? 'configuration file applied: no changes' : `configuration file applied: ${changes.length} change(s)`);
  }
  if (env.FLAGSTREAM_ENCRYPTION_KEY === undefined) logger.warn('FLAGSTREAM_ENCRYPTION_KEY is not set: destination secrets are stored unencrypted in Redis');

  let server: FastifyInstance | undefined;
  let workers: RunningWorkers | undefined;
  if (options.role !== 'api') workers = startWorkers(ctx);
  if (options.role !== 'worker') {
    if (env.ADMIN_TOKEN === undefined) logger.warn('ADMIN_TOKEN is not set: the admin API (/admin/v1) answers 401');
    server = buildServer(ctx);
    const address = await server.listen({ port: options.port ?? env.PORT, host: env.HOST });
    logger.info({ address, role: options.role }, `flagstream listening on ${address}`);
  } else {
    logger.info({ role: options.role }, 'flagstream worker started');
  }

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
