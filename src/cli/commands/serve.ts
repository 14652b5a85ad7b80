import type { FastifyInstance } from 'fastify';
import { createConfigService } from '../../admin/config-service.js';
import { createDestinationGuard } from '../../delivery/destination-guard.js';
import { loadConfigFile, pluginsOf } from '../../admin/load-config-file.js';
import { buildServer, closeServer } from '../../api/build-server.js';
import { readEnv } from '../../app-config.js';
import { durationMs } from '../../runtime/app-context.js';
import { settlesWithin } from '../../runtime/settles-within.js';
import { type RunningWorkers, startWorkers } from '../../worker/start-workers.js';
import { openSession } from '../connect.js';

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

/** Ready once both workers have their connections and while both run (BullMQ stops one whose start failed for good). */
function workersReadiness(workers: RunningWorkers): () => 'ok' | 'starting' | 'stopped' {
  let started = false;
  Promise.all([workers.routing.waitUntilReady(), workers.delivery.waitUntilReady()]).then(
    () => (started = true),
    () => undefined,
  );
  return () => (!started ? 'starting' : workers.routing.isRunning() && workers.delivery.isRunning() ? 'ok' : 'stopped');
}

/** `flagstream serve`: API and workers in one process, or one role so each scales on its own. */
export async function serve(options: { role: Role; config?: string; port?: number }): Promise<void> {
  const configPath = options.config ?? readEnv().FLAGSTREAM_CONFIG;
  const shutdownBoundMs = durationMs(readEnv().FLAGSTREAM_SHUTDOWN_TIMEOUT, 'FLAGSTREAM_SHUTDOWN_TIMEOUT');
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
    server = buildServer(ctx, workers === undefined ? {} : { workers: workersReadiness(workers) });
    const address = await server.listen({ port: options.port ?? env.PORT, host: env.HOST });
    logger.info({ address, role: options.role }, `flagstream listening on ${address}`);
  } else {
    logger.info({ role: options.role }, 'flagstream worker started');
  }

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
    const redisReachable = ctx.redis.status === 'ready';
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
