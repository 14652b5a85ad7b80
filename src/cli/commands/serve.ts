import type { FastifyInstance } from 'fastify';
import { createConfigService } from '../../admin/config-service.js';
import { createDestinationGuard } from '../../delivery/destination-guard.js';
import { loadConfigFile, pluginsOf } from '../../admin/load-config-file.js';
import { buildServer, closeServer } from '../../api/build-server.js';
import { readEnv } from '../../app-config.js';
import { loadPlugins } from '../../connectors/load-plugins.js';
import { ConnectorRegistry } from '../../connectors/registry.js';
import { AppError } from '../../domain/errors.js';
import { createLogger } from '../../observability/logger.js';
import { type AppContext, createAppContext, durationMs } from '../../runtime/app-context.js';
import { settlesWithin } from '../../runtime/settles-within.js';
import { readPlugins } from '../../stores/config-store.js';
import { deploymentKeys } from '../../stores/redis-keys.js';
import { createSecretBox } from '../../stores/secret-box.js';
import { type RunningWorkers, startWorkers } from '../../worker/start-workers.js';
import { connect } from '../connect.js';
import { locate } from './config-commands.js';

export type Role = 'all' | 'api' | 'worker';

/**
 * How the shutdown bound is shared out. Requests in progress get a grace period, then their
 * connections are closed; deliveries in flight are aborted (and retried later) well before the
 * bound; whatever still waits when the bound is reached is left: accepted work is in Redis, and
 * jobs in flight are re-run by another process once their locks lapse.
 */
export function shutdownPlan(boundMs: number) {
  return {
    httpGraceMs: Math.min(5000, boundMs / 3),
    abortDeliveriesAfterMs: Math.max(boundMs - 5000, boundMs / 2),
    workersWithinMs: boundMs - Math.min(2000, boundMs / 4),
  };
}

/** Ready once every worker (two per partition) has its connection and while all run (BullMQ stops one whose start failed for good). */
function workersReadiness(workers: RunningWorkers): () => 'ok' | 'starting' | 'stopped' {
  let started = false;
  const all = workers.partitions.flatMap((partition) => [partition.routing, partition.delivery]);
  Promise.all(all.map((worker) => worker.waitUntilReady())).then(
    () => (started = true),
    () => undefined,
  );
  return () => (!started ? 'starting' : all.every((worker) => worker.isRunning()) ? 'ok' : 'stopped');
}

/** `flagstream serve`: API and workers in one process, or one role so each scales on its own. */
export async function serve(options: { role: Role; config?: string; port?: number }): Promise<void> {
  const env = readEnv();
  const logger = createLogger(env.FLAGSTREAM_LOG_LEVEL, process.stdout, env.FLAGSTREAM_LOG_FORMAT);
  const shutdownBoundMs = durationMs(env.FLAGSTREAM_SHUTDOWN_TIMEOUT, 'FLAGSTREAM_SHUTDOWN_TIMEOUT');
  // A malformed key is refused before anything is opened; a wrong one when the configuration is first read.
  createSecretBox(env.FLAGSTREAM_ENCRYPTION_KEY);
  const configPath = options.config ?? env.FLAGSTREAM_CONFIG;
  const file = configPath === undefined ? undefined : await loadConfigFile(configPath);
  const connection = await connect(env, logger, true);
  let ctx: AppContext | undefined;
  let server: FastifyInstance | undefined;
  let workersState: (() => 'ok' | 'starting' | 'stopped') | undefined;
  try {
    const registry = new ConnectorRegistry();
    const plugins = [...new Set([...(await readPlugins(connection.redis, deploymentKeys(env.FLAGSTREAM_REDIS_PREFIX, connection.redis))), ...pluginsOf(file?.data)])];
    for (const connector of await loadPlugins(plugins)) registry.register(connector);
    if (plugins.length > 0) logger.info({ plugins }, `loaded ${plugins.length} connector plugin(s)`);
    ctx = await createAppContext({ env, logger, redis: connection.redis, registry });
    if (file !== undefined) {
      const changes = await createConfigService({ store: ctx.configStore, registry: ctx.registry, destinationGuard: createDestinationGuard(env.FLAGSTREAM_DESTINATION_ALLOWLIST) }).apply(file.data, { inputProblems: file.problems }).catch(locate(file));
      await ctx.config.refresh();
      logger.info({ file: configPath, changes: changes.length }, changes.length === 0 ? 'configuration file applied: no changes' : `configuration file applied: ${changes.length} change(s)`);
    }
    if (env.FLAGSTREAM_ENCRYPTION_KEY === undefined) logger.warn('FLAGSTREAM_ENCRYPTION_KEY is not set: destination secrets are stored unencrypted in Redis');
    // Listen before the workers start: a port already taken ends the process instead of leaving a headless worker.
    if (options.role !== 'worker') {
      if (env.ADMIN_TOKEN === undefined) logger.warn('ADMIN_TOKEN is not set: the admin API (/admin/v1) answers 401');
      // The workers start after listening: until then (and if they stop) /readyz says so.
      server = buildServer(ctx, options.role === 'api' ? {} : { workers: () => workersState?.() ?? 'starting' });
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
    connection,
    async close() {
      await context.close();
      await connection.close();
    },
  };
  let workers: RunningWorkers | undefined;
  if (options.role !== 'api') {
    workers = startWorkers(context);
    workersState = workersReadiness(workers);
  }
  if (options.role === 'worker') logger.info({ role: options.role }, 'flagstream worker started');

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const startedAt = Date.now();
    const plan = shutdownPlan(shutdownBoundMs);
    logger.info({ signal, boundMs: shutdownBoundMs }, `shutting down (exits within ${shutdownBoundMs / 1000}s)`);
    // The bound holds whatever is still waiting (a second signal ends the process at once).
    setTimeout(() => {
      logger.warn({ boundMs: shutdownBoundMs }, 'shutdown bound reached: exiting now; jobs in flight are re-run once their locks lapse');
      session.connection.child?.kill('SIGTERM');
      process.exit(1);
    }, shutdownBoundMs);
    // Nothing in flight can be acknowledged while Redis is unreachable: do not wait for the workers then.
    const redisReachable = context.redis.status === 'ready';
    const closingWorkers = workers?.close({ abortInFlightAfterMs: plan.abortDeliveriesAfterMs });
    const [, workersStopped] = await Promise.all([
      server === undefined ? undefined : closeServer(server, plan.httpGraceMs),
      closingWorkers === undefined
        ? true
        : settlesWithin(closingWorkers, redisReachable ? startedAt + plan.workersWithinMs - Date.now() : 0, (error) => logger.warn({ err: error }, 'workers did not close cleanly')),
    ]);
    if (!workersStopped) logger.warn({ redisReachable }, 'not waiting any longer for the workers: their jobs in flight are re-run once their locks lapse');
    await settlesWithin(session.close(), startedAt + shutdownBoundMs - Date.now(), (error) => logger.warn({ err: error }, 'closing connections failed'));
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}
