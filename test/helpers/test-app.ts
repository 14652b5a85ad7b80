import type { FastifyInstance } from 'fastify';
import type { Job } from 'bullmq';
import { pino } from 'pino';
import { createConfigService } from '../../src/admin/config-service.js';
import { readEnv } from '../../src/app-config.js';
import { buildServer } from '../../src/api/build-server.js';
import type { ConfigurationInput } from '../../src/domain/configuration.js';
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
  admin(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<{ status: number; body: unknown }>;
  apply(config: ConfigurationInput): Promise<void>;
  /** Resolves once `count` delivery jobs have completed (counting from the start). */
  waitForDeliveries(count: number, timeoutMs?: number): Promise<void>;
  waitForRoutings(count: number, timeoutMs?: number): Promise<void>;
  startWorkers(options?: WorkerOptions): RunningWorkers;
  close(): Promise<void>;
}

/** The whole stack on a real Redis under a unique prefix: API listening on an ephemeral port, workers optional. */
export async function startTestApp(options: { env?: Record<string, string>; workers?: boolean; workerOptions?: WorkerOptions; clock?: () => number } = {}): Promise<TestApp> {
  const prefix = uniquePrefix();
  const env = readEnv({
    REDIS_URL: testRedisUrl,
    ADMIN_TOKEN: adminToken,
    FLAGSTREAM_REDIS_PREFIX: prefix,
    FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1',
    FLAGSTREAM_LOG_LEVEL: 'silent',
    FLAGSTREAM_BATCH_WAIT_CAP_MS: '50',
    ...options.env,
  });
  const redis = createTestRedis();
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const ctx = await createAppContext({ env, logger, redis, metrics: createMetrics({ defaultMetrics: false }), configPollIntervalMs: 200, ...(options.clock ? { clock: options.clock } : {}) });
  const server = buildServer(ctx, { logger });
  const address = await server.listen({ port: 0, host: '127.0.0.1' });
  const completedDeliveries: { job: Job; result: unknown }[] = [];
  const completedRoutings: { job: Job; result: unknown }[] = [];
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
      await createConfigService({ store: ctx.configStore, registry: ctx.registry }).apply(config);
      await ctx.config.refresh();
    },
    waitForDeliveries(count, timeoutMs) {
      return waitUntil(() => completedDeliveries.length >= count, subscribe, timeoutMs, `${count} delivery job(s)`);
    },
    waitForRoutings(count, timeoutMs) {
      return waitUntil(() => completedRoutings.length >= count, subscribe, timeoutMs, `${count} routing job(s)`);
    },
    startWorkers(workerOptions) {
      const workers = startWorkers(ctx, { random: () => 0.5, quickRetries: 0, ...workerOptions });
      workers.delivery.on('completed', (job, result) => {
        completedDeliveries.push({ job, result });
        notify();
      });
      workers.routing.on('completed', (job, result) => {
        completedRoutings.push({ job, result });
        notify();
      });
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
