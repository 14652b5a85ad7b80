import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { createConfigService } from '../admin/config-service.js';
import { createLedgerService } from '../admin/ledger-service.js';
import { createDeadLettersService } from '../admin/dead-letters-service.js';
import { createImpressionsExportService } from '../admin/impressions-export-service.js';
import { createDestinationHealthService } from '../admin/destination-health-service.js';
import { createMonitoringService } from '../admin/monitoring-service.js';
import { createIngestService } from '../ingest/accept-impressions.js';
import { describeConnector } from '../connectors/describe-connector.js';
import { createDestinationGuard } from '../delivery/destination-guard.js';
import { createHttpTransport } from '../delivery/http-transport.js';
import { testDestination } from '../delivery/test-destination.js';
import { AppError } from '../domain/errors.js';
import { type AppContext, durationMs } from '../runtime/app-context.js';
import { isRedisUnavailable } from '../runtime/redis-outage-log.js';
import { settlesWithin } from '../runtime/settles-within.js';
import { createAuthFailureLimiter } from './auth-guard.js';
import { createQueueDepthSampler } from '../observability/queue-depths.js';
import { createTailSubscriptions } from '../stores/live-tail-store.js';
import { createWorkerRegistry } from '../stores/worker-registry-store.js';
import { defaultLiveTailLimits, type LiveTailLimits } from './live-tail-stream.js';
import { registerErrorHandler } from './plugins/error-handler.js';
import { registerJsonBody } from './plugins/json-body.js';
import { registerAdminRoutes } from './routes/admin.routes.js';
import { registerIngestRoutes } from './routes/ingest.routes.js';
import { registerImpressionRoutes } from './routes/impressions.routes.js';
import { registerOpenApi } from './openapi.js';
import { registerMonitoringRoutes } from './routes/monitoring.routes.js';
import { registerUiRoutes } from './routes/ui.routes.js';
import { createUiSessions } from './ui-session.js';
import { monitoringAcross, statsAcross } from '../runtime/partitioned-stores.js';

/** An incoming X-Request-Id is kept when it is a plain token; anything else gets a fresh id. */
function requestId(request: IncomingMessage): string {
  const given = request.headers['x-request-id'];
  return typeof given === 'string' && /^[\w.:@/+=-]{1,128}$/.test(given) ? given : randomUUID();
}

/** How long a client may take over each part of an exchange before its connection is closed. */
export interface HttpTimeouts {
  /** To send the request line and headers. */
  readonly headersMs: number;
  /** To send the whole request, body included (answered 408). */
  readonly requestMs: number;
  /** Without a byte either way while a request is in progress (e.g. not reading the answer). */
  readonly idleMs: number;
  /** Between two requests on a kept-alive connection: longer than load balancers' usual 60 s, so they close first. */
  readonly keepAliveMs: number;
  /** How often node checks the header and request timeouts (its default, 30 s, would add up to that much to them). */
  readonly checkEveryMs: number;
}

export const defaultHttpTimeouts: HttpTimeouts = { headersMs: 10_000, requestMs: 30_000, idleMs: 60_000, keepAliveMs: 72_000, checkEveryMs: 1000 };

export interface ServerOptions {
  readonly logger?: Logger | false;
  /** The state of this process's workers, for /readyz; absent when the process runs none. */
  readonly workers?: () => 'ok' | 'starting' | 'stopped';
  readonly timeouts?: Partial<HttpTimeouts>;
  readonly liveTail?: Partial<LiveTailLimits>;
}

/** How long /readyz waits for Redis' PING before answering 503. */
const readinessPingTimeoutMs = 1000;

/** The HTTP adapter: ingest, admin and operations routes over the shared context. Never listens. */
export function buildServer(ctx: AppContext, options: ServerOptions = {}): FastifyInstance {
  const maxBytes = ctx.env.FLAGSTREAM_MAX_BODY_BYTES;
  const timeouts = { ...defaultHttpTimeouts, ...options.timeouts };
  // Every Redis call made while serving a request goes through this connection: none waits for long.
  const { serving } = ctx;
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger at run time; the cast only narrows fastify's generics.
    loggerInstance: (options.logger === false ? undefined : (options.logger ?? ctx.logger)) as FastifyBaseLogger | undefined,
    bodyLimit: maxBytes,
    trustProxy: ctx.env.FLAGSTREAM_TRUST_PROXY,
    // One log line per ingest request would cost more than the request at high rates.
    logController: new LogController({ disableRequestLogging: true }),
    http: { headersTimeout: timeouts.headersMs, requestTimeout: timeouts.requestMs, connectionsCheckingInterval: timeouts.checkEveryMs },
    requestTimeout: timeouts.requestMs,
    connectionTimeout: timeouts.idleMs,
    keepAliveTimeout: timeouts.keepAliveMs,
    // close() ends idle kept-alive connections at once; closeServer ends the others after a grace period.
    forceCloseConnections: 'idle',
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
  // Before any route: it records each one as it is added.
  registerOpenApi(app, { version: '0.1.0' });
  app.addHook('onError', async (_request, _reply, error) => {
    ctx.outages.absorb(error, 'http');
  });

  const ingest = createIngestService({ stores: serving, redis: serving.redis, metrics: ctx.metrics, backlogLimit: ctx.env.FLAGSTREAM_INGEST_BACKLOG_LIMIT, clock: ctx.clock });
  const configService = createConfigService({ store: serving.configStore, registry: ctx.registry, destinationGuard: createDestinationGuard(ctx.env.FLAGSTREAM_DESTINATION_ALLOWLIST) });
  app.addHook('onResponse', async (request, reply) => {
    const endpoint = request.routeOptions.url;
    if (endpoint !== undefined && !endpoint.startsWith('/admin') && request.method === 'POST') {
      ctx.metrics.ingestRequests.inc({ endpoint, status: String(reply.statusCode) });
    }
  });
  const authFailures = createAuthFailureLimiter({
    limit: ctx.env.FLAGSTREAM_AUTH_FAILURE_LIMIT,
    windowMs: durationMs(ctx.env.FLAGSTREAM_AUTH_FAILURE_WINDOW, 'FLAGSTREAM_AUTH_FAILURE_WINDOW'),
    clock: ctx.clock,
  });
  const stats = statsAcross(serving);
  registerIngestRoutes(app, { config: ctx.config, ingest, stats, metrics: ctx.metrics, clock: ctx.clock, authFailures });
  const current = () => ctx.config.current();
  const environmentExists = async (environmentId: string) => (await serving.configStore.getEnvironment(environmentId)) !== undefined;
  const subscriptions = createTailSubscriptions({ redis: ctx.redis, keys: ctx.keys, clock: ctx.clock });
  app.addHook('onClose', async () => subscriptions.close());
  const uiSessions = ctx.env.ADMIN_TOKEN === undefined ? undefined : createUiSessions(ctx.env.ADMIN_TOKEN, ctx.clock);
  registerUiRoutes(app, { adminToken: ctx.env.ADMIN_TOKEN, sessions: uiSessions, authFailures, queues: serving.partitions.map((stores) => stores.queues), clock: ctx.clock });
  registerAdminRoutes(app, {
    adminToken: ctx.env.ADMIN_TOKEN,
    authFailures,
    uiSessions,
    configService,
    stats,
    ledger: createLedgerService({ partitions: serving.partitions }),
    deadLetters: createDeadLettersService({ partitions: serving.partitions, config: current, clock: ctx.clock }),
    destinationHealth: createDestinationHealthService({ partitionFor: serving.partitionFor, config: current, clock: ctx.clock }),
    clock: ctx.clock,
    connectors: () => ctx.registry.list().map(describeConnector),
    moreRoutes: (admin) => {
      registerMonitoringRoutes(admin, {
        monitoring: createMonitoringService({ store: monitoringAcross(serving), environmentExists, clock: ctx.clock }),
        subscriptions,
        environmentExists,
        liveTail: { ...defaultLiveTailLimits, ...options.liveTail },
      });
      registerImpressionRoutes(admin, {
        exports: createImpressionsExportService({
          config: current,
          partitionFor: serving.partitionFor,
          guard: createDestinationGuard(ctx.env.FLAGSTREAM_DESTINATION_ALLOWLIST),
          clock: ctx.clock,
        }),
      });
    },
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
  const workers = createWorkerRegistry({ redis: serving.redis, keys: ctx.keys, clock: ctx.clock });
  // Ready = Redis answers (ingest can accept); worker processes are reported, not required:
  // accepted impressions wait durably for a worker, and an API pod must not go unready for that.
  app.get('/readyz', async (_request, reply) => {
    const checks: Record<string, string> = { redis: await redisReadiness(serving.redis) };
    if (options.workers !== undefined) checks.workers = options.workers();
    const notReady = Object.keys(checks).filter((name) => checks[name] !== 'ok');
    if (notReady.length > 0) return reply.status(503).send({ status: 'not ready', notReady, checks });
    // Worker processes are reported, not required: accepted impressions wait durably for one.
    const alive = await workers.alive().catch(() => ({ count: 0, workers: [] }));
    return reply.send({
      status: 'ready',
      checks,
      redis: 'up',
      workers: { count: alive.count, processes: alive.workers },
      ...(alive.count === 0 ? { warning: 'no worker process is running: impressions are accepted but not routed or delivered until one starts' } : {}),
    });
  });
  const queueDepths = createQueueDepthSampler({ queues: serving.partitions.map((stores) => stores.queues), metrics: ctx.metrics, clock: ctx.clock });
  app.get('/metrics', async (_request, reply) => {
    // A cached sample must not hide an outage: not connected means unknown queue counts.
    const reachable =
      serving.redis.status === 'ready' &&
      // One PING per scrape: a cached sample alone would not notice a Redis that stopped answering.
      (await Promise.all([serving.redis.ping(), queueDepths.refresh()]).then(
        () => true,
        (error: unknown) => {
          if (!isRedisUnavailable(error)) throw error;
          return false;
        },
      ));
    ctx.metrics.redisUp.set(reachable ? 1 : 0);
    if (!reachable) {
      // The process's own metrics still answer; queue counts it cannot read are absent, not stale.
      queueDepths.forget();
      ctx.metrics.queueJobs.reset();
    }
    return reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
  });
  return app;
}

async function redisReadiness(redis: Redis): Promise<string> {
  if (redis.status !== 'ready') return `unreachable (connection ${redis.status})`;
  const ping = redis.ping().then(
    (answer) => (answer === 'PONG' ? 'ok' : `unexpected answer to PING: ${answer}`),
    (error: unknown) => `unreachable (${error instanceof Error ? error.message : String(error)})`,
  );
  return (await settlesWithin(ping, readinessPingTimeoutMs)) ? ping : `unreachable (no answer to PING within ${readinessPingTimeoutMs} ms)`;
}

/**
 * Stops taking connections, closes idle ones at once, and gives requests in progress `graceMs`
 * before closing their connections too (what they had durably accepted stays accepted).
 */
export async function closeServer(app: FastifyInstance, graceMs: number): Promise<void> {
  const cut = setTimeout(() => app.server.closeAllConnections(), graceMs);
  try {
    await app.close();
  } finally {
    clearTimeout(cut);
  }
}
