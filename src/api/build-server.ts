import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import { createConfigService } from '../admin/config-service.js';
import { createLedgerService } from '../admin/ledger-service.js';
import { createDeadLettersService } from '../admin/dead-letters-service.js';
import { createDestinationHealthService } from '../admin/destination-health-service.js';
import { createMonitoringService } from '../admin/monitoring-service.js';
import { createIngestService } from '../ingest/accept-impressions.js';
import { describeConnector } from '../connectors/describe-connector.js';
import { createDestinationGuard } from '../delivery/destination-guard.js';
import { createHttpTransport } from '../delivery/http-transport.js';
import { testDestination } from '../delivery/test-destination.js';
import { AppError } from '../domain/errors.js';
import { createQueueDepthSampler } from '../observability/queue-depths.js';
import type { AppContext } from '../runtime/app-context.js';
import { createTailSubscriptions } from '../stores/live-tail-store.js';
import { createWorkerRegistry } from '../stores/worker-registry-store.js';
import { defaultLiveTailLimits, type LiveTailLimits } from './live-tail-stream.js';
import { registerErrorHandler } from './plugins/error-handler.js';
import { registerJsonBody } from './plugins/json-body.js';
import { registerAdminRoutes } from './routes/admin.routes.js';
import { registerIngestRoutes } from './routes/ingest.routes.js';
import { registerMonitoringRoutes } from './routes/monitoring.routes.js';

/** An incoming X-Request-Id is kept when it is a plain token; anything else gets a fresh id. */
function requestId(request: IncomingMessage): string {
  const given = request.headers['x-request-id'];
  return typeof given === 'string' && /^[\w.:@/+=-]{1,128}$/.test(given) ? given : randomUUID();
}

/** The HTTP adapter: ingest, admin and operations routes over the shared context. Never listens. */
export function buildServer(ctx: AppContext, options: { logger?: Logger | false; liveTail?: Partial<LiveTailLimits> } = {}): FastifyInstance {
  const maxBytes = ctx.env.FLAGSTREAM_MAX_BODY_BYTES;
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger at run time; the cast only narrows fastify's generics.
    loggerInstance: (options.logger === false ? undefined : (options.logger ?? ctx.logger)) as FastifyBaseLogger | undefined,
    bodyLimit: maxBytes,
    trustProxy: ctx.env.FLAGSTREAM_TRUST_PROXY,
    // One log line per ingest request would cost more than the request at high rates.
    logController: new LogController({ disableRequestLogging: true }),
    // Every log line of a request carries its reqId; X-Request-Id is honoured and echoed.
    requestIdHeader: false,
    genReqId: requestId,
  });
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  // Admin calls are rare and worth a line each (ingest is not: one line per request would cost more than it).
  app.addHook('onResponse', async (request, reply) => {
    if (request.url.startsWith('/admin/')) request.log.info({ method: request.method, path: request.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'admin request');
  });
  registerErrorHandler(app);
  registerJsonBody(app, maxBytes);

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
  const environmentExists = async (environmentId: string) => (await ctx.configStore.getEnvironment(environmentId)) !== undefined;
  const subscriptions = createTailSubscriptions({ redis: ctx.redis, keys: ctx.keys, clock: ctx.clock });
  app.addHook('onClose', async () => subscriptions.close());
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
    moreRoutes: (admin) =>
      registerMonitoringRoutes(admin, {
        monitoring: createMonitoringService({ store: ctx.monitoring, environmentExists, clock: ctx.clock }),
        subscriptions,
        environmentExists,
        liveTail: { ...defaultLiveTailLimits, ...options.liveTail },
      }),
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

  app.get('/healthz', async () => ({ status: 'ok' }));
  const workers = createWorkerRegistry({ redis: ctx.redis, keys: ctx.keys, clock: ctx.clock });
  // Ready = Redis answers (ingest can accept); worker processes are reported, not required:
  // accepted impressions wait durably for a worker, and an API pod must not go unready for that.
  app.get('/readyz', async (_request, reply) => {
    // Not connected: commands would wait for the reconnect, a probe must not.
    const pong = ctx.redis.status !== 'ready' ? 'down' : await Promise.race([ctx.redis.ping().catch(() => 'down'), new Promise<string>((resolve) => setTimeout(resolve, 2_000, 'down').unref())]);
    if (pong !== 'PONG') return reply.status(503).send({ status: 'redis unreachable', redis: 'down' });
    const alive = await workers.alive().catch(() => ({ count: 0, workers: [] }));
    return reply.send({
      status: 'ready',
      redis: 'up',
      workers: { count: alive.count, processes: alive.workers },
      ...(alive.count === 0 ? { warning: 'no worker process is running: impressions are accepted but not routed or delivered until one starts' } : {}),
    });
  });
  const queueDepths = createQueueDepthSampler({ queues: ctx.queues, metrics: ctx.metrics, clock: ctx.clock });
  app.get('/metrics', async (_request, reply) => {
    // During a Redis outage the last sampled depths are served with everything else.
    await queueDepths.refresh().catch(() => undefined);
    return reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
  });
  return app;
}
