import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import { createConfigService } from '../admin/config-service.js';
import { createLedgerService } from '../admin/ledger-service.js';
import { createDeadLettersService } from '../admin/dead-letters-service.js';
import { createImpressionsExportService } from '../admin/impressions-export-service.js';
import { createDestinationHealthService } from '../admin/destination-health-service.js';
import { createIngestService } from '../ingest/accept-impressions.js';
import { describeConnector } from '../connectors/describe-connector.js';
import { createDestinationGuard } from '../delivery/destination-guard.js';
import { createHttpTransport } from '../delivery/http-transport.js';
import { testDestination } from '../delivery/test-destination.js';
import { AppError } from '../domain/errors.js';
import type { AppContext } from '../runtime/app-context.js';
import { registerErrorHandler } from './plugins/error-handler.js';
import { registerJsonBody } from './plugins/json-body.js';
import { registerAdminRoutes } from './routes/admin.routes.js';
import { registerIngestRoutes } from './routes/ingest.routes.js';
import { registerImpressionRoutes } from './routes/impressions.routes.js';
import { registerOpenApi } from './openapi.js';

/** The HTTP adapter: ingest, admin and operations routes over the shared context. Never listens. */
export function buildServer(ctx: AppContext, options: { logger?: Logger | false } = {}): FastifyInstance {
  const maxBytes = ctx.env.FLAGSTREAM_MAX_BODY_BYTES;
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger at run time; the cast only narrows fastify's generics.
    loggerInstance: (options.logger === false ? undefined : (options.logger ?? ctx.logger)) as FastifyBaseLogger | undefined,
    bodyLimit: maxBytes,
    trustProxy: ctx.env.FLAGSTREAM_TRUST_PROXY,
    // One log line per ingest request would cost more than the request at high rates.
    logController: new LogController({ disableRequestLogging: true }),
  });
  registerErrorHandler(app);
  registerJsonBody(app, maxBytes);
  // Before any route: it records each one as it is added.
  registerOpenApi(app, { version: '0.1.0' });

  const ingest = createIngestService({ queues: ctx.queues, redis: ctx.redis, ledger: ctx.ledger, metrics: ctx.metrics, backlogLimit: ctx.env.FLAGSTREAM_INGEST_BACKLOG_LIMIT, clock: ctx.clock });
  const configService = createConfigService({ store: ctx.configStore, registry: ctx.registry });
  app.addHook('onResponse', async (request, reply) => {
    const endpoint = request.routeOptions.url;
    if (endpoint !== undefined && !endpoint.startsWith('/admin') && request.method === 'POST') {
      ctx.metrics.ingestRequests.inc({ endpoint, status: String(reply.statusCode) });
    }
  });
  registerIngestRoutes(app, { config: ctx.config, ingest, stats: ctx.stats, metrics: ctx.metrics, clock: ctx.clock });
  const current = () => ctx.config.current();
  registerAdminRoutes(app, {
    adminToken: ctx.env.ADMIN_TOKEN,
    configService,
    stats: ctx.stats,
    ledger: createLedgerService({ redis: ctx.redis, keys: ctx.keys, ledger: ctx.ledger, queues: ctx.queues }),
    deadLetters: createDeadLettersService({ store: ctx.deadLetters, queues: ctx.queues, config: current, clock: ctx.clock }),
    destinationHealth: createDestinationHealthService({ health: ctx.health, deliveryQueue: ctx.queues.delivery, config: current, clock: ctx.clock }),
    deliveryQueue: ctx.queues.delivery,
    clock: ctx.clock,
    connectors: () => ctx.registry.list().map(describeConnector),
    testDestination: async (destinationId) => {
      const destination = ctx.config.current().destinations.get(destinationId);
      if (destination === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no destination "${destinationId}"`, { field: 'destinationId' });
      if (destination.connector === undefined || destination.settingsError !== undefined) {
        throw new AppError('FLAGSTREAM_ERR_VALIDATION', `destination "${destinationId}" is misconfigured: ${destination.settingsError ?? 'unknown connector'}`);
      }
      const transport = createHttpTransport({ guard: createDestinationGuard(ctx.env.FLAGSTREAM_DESTINATION_ALLOWLIST.split(',')), userAgent: 'flagstream/0.1 (destination test)' });
      try {
        return await testDestination(destination, { http: transport }, ctx.clock());
      } finally {
        transport.close();
      }
    },
  });

  registerImpressionRoutes(app, {
    adminToken: ctx.env.ADMIN_TOKEN,
    exports: createImpressionsExportService({
      config: current,
      queues: ctx.queues,
      ledger: ctx.ledger,
      guard: createDestinationGuard(ctx.env.FLAGSTREAM_DESTINATION_ALLOWLIST.split(',')),
      clock: ctx.clock,
    }),
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const pong = await ctx.redis.ping().catch(() => 'down');
    return reply.status(pong === 'PONG' ? 200 : 503).send({ status: pong === 'PONG' ? 'ready' : 'redis unreachable' });
  });
  app.get('/metrics', async (_request, reply) => {
    const [ingestCounts, deliveryCounts] = await Promise.all([
      ctx.queues.ingest.getJobCounts('waiting', 'active', 'delayed', 'failed'),
      ctx.queues.delivery.getJobCounts('waiting', 'active', 'delayed', 'failed'),
    ]);
    for (const [queue, counts] of [['ingest', ingestCounts], ['delivery', deliveryCounts]] as const) {
      for (const [state, count] of Object.entries(counts)) ctx.metrics.queueJobs.set({ queue, state }, count);
    }
    return reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
  });
  return app;
}
