import type { FastifyInstance } from 'fastify';
import type { Job } from 'bullmq';
import { pino } from 'pino';
import { createConfigService } from '../../src/admin/config-service.js';
import { readEnv } from '../../src/app-config.js';
import { buildServer, type ServerOptions } from '../../src/api/build-server.js';
import { createDestinationGuard } from '../../src/delivery/destination-guard.js';
import type { ConnectorRegistry } from '../../src/connectors/registry.js';
import type { ConfigurationInput } from '../../src/domain/configuration.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { type AppContext, createAppContext } from '../../src/runtime/app-context.js';
import { type RunningWorkers, startWorkers, type WorkerOptions } from '../../src/worker/start-workers.js';
import { waitUntil } from './deferred.js';
import { createTestRedis, deleteKeys, testRedisUrl, uniquePrefix } from './redis.js';

export const adminToken = 'test-admin-token';

export interface TestApp {
  readonly ctx: AppContext;
  readonly server: FastifyInstance;
  readonly url: string;
  workers: RunningWorkers | undefined;
  /** Completed delivery jobs seen so far (results included). */
  readonly completedDeliveries: { readonly job: Job; readonly result: unknown }[];
  readonly completedRoutings: { readonly job: Job; readonly result: unknown }[];
  /** Delivery attempts that ended in a retry (BullMQ 'failed' events). */
  readonly failedDeliveries: { readonly job: Job; readonly error: Error; readonly at: number }[];
  admin(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<{ status: number; body: unknown }>;
  apply(config: ConfigurationInput): Promise<void>;
  /** Resolves once `count` delivery jobs (of `destination`, if given) have completed, counting from the start. */
  waitForDeliveries(count: number, timeoutMs?: number, destination?: string): Promise<void>;
  waitForRoutings(count: number, timeoutMs?: number): Promise<void>;
  waitForFailedDeliveries(count: number, timeoutMs?: number, destination?: string): Promise<void>;
  /** Waits for an observable state (polled every 25 ms), for what no event announces. */
  waitForState(condition: () => Promise<boolean>, timeoutMs?: number, what?: string): Promise<void>;
  startWorkers(options?: WorkerOptions): RunningWorkers;
  close(): Promise<void>;
}

/** The whole stack on a real Redis under a unique prefix: API listening on an ephemeral port, workers optional. */
export async function startTestApp(
  options: {
    env?: Record<string, string>;
    workers?: boolean;
    workerOptions?: WorkerOptions;
    clock?: () => number;
    registry?: ConnectorRegistry;
    /** A Redis other than the test Redis (e.g. one the test stops). */
    redisUrl?: string;
    /** Where log lines go (debug level), for tests that read them. */
    logStream?: NodeJS.WritableStream;
    /** Server options other than the logger (e.g. shorter HTTP timeouts). */
    server?: Omit<ServerOptions, 'logger'>;
  } = {},
): Promise<TestApp> {
  const prefix = uniquePrefix();
  const env = readEnv({
    REDIS_URL: options.redisUrl ?? testRedisUrl,
    ADMIN_TOKEN: adminToken,
    FLAGSTREAM_REDIS_PREFIX: prefix,
    FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1',
    FLAGSTREAM_LOG_LEVEL: 'silent',
    FLAGSTREAM_BATCH_WAIT_CAP_MS: '50',
    // Tests send bad keys on purpose and many at once; the brute-force limit has its own tests.
    FLAGSTREAM_AUTH_FAILURE_LIMIT: '0',
    ...options.env,
  });
  const redis = createTestRedis(options.redisUrl);
  const logger = options.logStream
    ? createLogger('debug', options.logStream)
    : pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const ctx = await createAppContext({ env, logger, redis, metrics: createMetrics({ defaultMetrics: false }), configPollIntervalMs: 200, ...(options.clock ? { clock: options.clock } : {}), ...(options.registry ? { registry: options.registry } : {}) });
  const server = buildServer(ctx, { ...options.server, logger });
  const address = await server.listen({ port: 0, host: '127.0.0.1' });
  const completedDeliveries: { job: Job; result: unknown }[] = [];
  const completedRoutings: { job: Job; result: unknown }[] = [];
  const failedDeliveries: { job: Job; error: Error; at: number }[] = [];
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const listener of listeners) listener();
  };
  const subscribe = (onChange: () => void) => {
    listeners.add(onChange);
    return () => listeners.delete(onChange);
  };

  const app: TestApp = {
    ctx,
    server,
    url: address,
    workers: undefined,
    completedDeliveries,
    completedRoutings,
    failedDeliveries,
    async admin(method, path, body) {
      const response = await server.inject({
        method,
        url: `/admin/v1${path}`,
        headers: { authorization: `Bearer ${adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });
      return { status: response.statusCode, body: response.body === '' ? undefined : (JSON.parse(response.body) as unknown) };
    },
    async apply(config) {
      await createConfigService({ store: ctx.configStore, registry: ctx.registry, destinationGuard: createDestinationGuard(ctx.env.FLAGSTREAM_DESTINATION_ALLOWLIST) }).apply(config);
      await ctx.config.refresh();
    },
    waitForDeliveries(count, timeoutMs, destination) {
      const matching = () => completedDeliveries.filter((d) => destination === undefined || d.job.name === destination).length;
      return waitUntil(() => matching() >= count, subscribe, timeoutMs, `${count} delivery job(s)${destination ? ` of ${destination}` : ''}`);
    },
    waitForRoutings(count, timeoutMs) {
      return waitUntil(() => completedRoutings.length >= count, subscribe, timeoutMs, `${count} routing job(s)`);
    },
    waitForFailedDeliveries(count, timeoutMs, destination) {
      const matching = () => failedDeliveries.filter((d) => destination === undefined || d.job.name === destination).length;
      return waitUntil(() => matching() >= count, subscribe, timeoutMs, `${count} failed delivery attempt(s)${destination ? ` of ${destination}` : ''}`);
    },
    async waitForState(condition, timeoutMs = 15_000, what = 'state') {
      const deadline = Date.now() + timeoutMs;
      while (!(await condition())) {
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    startWorkers(workerOptions) {
      const workers = startWorkers(ctx, { random: () => 0.5, quickRetries: 0, ...workerOptions });
      for (const partition of workers.partitions) {
        partition.delivery.on('completed', (job, result) => {
          completedDeliveries.push({ job, result });
          notify();
        });
        partition.delivery.on('failed', (job, error) => {
          if (job !== undefined) failedDeliveries.push({ job, error, at: Date.now() });
          notify();
        });
        partition.routing.on('completed', (job, result) => {
          completedRoutings.push({ job, result });
          notify();
        });
      }
      app.workers = workers;
      return workers;
    },
    async close() {
      await server.close();
      await app.workers?.close();
      await ctx.close();
      await deleteKeys(redis, prefix);
      redis.disconnect();
    },
  };
  if (options.workers !== false) app.startWorkers(options.workerOptions);
  return app;
}

/** POSTs JSON to the running test API. */
export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown; headers: Headers }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body: parsed, headers: response.headers };
}
