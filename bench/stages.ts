import { randomUUID } from 'node:crypto';
// `npm run bench:stages`: each worker stage alone, on jobs prefilled in Redis, printed, never
// asserted. Routing: ingest jobs → routed (0 or 1 destination: the cost of fan-out shows).
// Delivery: delivery jobs → signed webhook to a receiver in another process.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { createConfigService } from '../src/admin/config-service.js';
import { createDestinationGuard } from '../src/delivery/destination-guard.js';
import { readEnv } from '../src/app-config.js';
import { type Impression, impressionId } from '../src/domain/impression.js';
import { encodeStoredBatch } from '../src/domain/stored-batch.js';
import { createMetrics } from '../src/observability/metrics.js';
import { type AppContext, createAppContext } from '../src/runtime/app-context.js';
import { startWorkers } from '../src/worker/start-workers.js';
import { createTestRedis, deleteKeys, uniquePrefix } from '../test/helpers/redis.js';

function impressions(count: number): Impression[] {
  return Array.from({ length: count }, (_, j) => {
    const fields = { key: `user-${j}`, split: 'flag_0', treatment: j % 2 ? 'on' : 'off', label: 'default rule', time: 1_718_900_000_000 + j, splitVersionNumber: 1_718_800_000_000, environmentId: 'env-bench' };
    return { id: impressionId(fields), ...fields, environmentName: 'Bench', sdk: 'nodejs', sdkVersion: '11.11.0', machineIp: '10.0.0.5', machineName: 'bench', receptionTimestamp: 1_795_554_256_281 };
  });
}

async function withContext(destinations: { id: string; url: string }[], run: (ctx: AppContext) => Promise<void>): Promise<void> {
  const prefix = uniquePrefix('stages');
  const redis = createTestRedis();
  const env = readEnv({ ...process.env, FLAGSTREAM_REDIS_PREFIX: prefix, FLAGSTREAM_LOG_LEVEL: 'warn', FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1' });
  const ctx = await createAppContext({ env, logger: pino({ level: 'warn' }), redis, metrics: createMetrics({ defaultMetrics: false }) });
  await createConfigService({ store: ctx.configStore, registry: ctx.registry, destinationGuard: createDestinationGuard(env.FLAGSTREAM_DESTINATION_ALLOWLIST) }).apply({
    environments: [
      {
        id: 'env-bench',
        destinations: destinations.map(({ id, url }) => ({ id, type: 'webhook', settings: { url, secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', batchSize: 5000, maxBodyBytes: 20_000_000, maxBatchWait: 200 } })),
      },
    ],
  });
  await ctx.config.refresh();
  try {
    await run(ctx);
  } finally {
    await ctx.close();
    await deleteKeys(redis, prefix);
    redis.disconnect();
  }
}

const rate = (count: number, ms: number) => Math.round(count / (ms / 1000)).toLocaleString('en-US');

async function routing(destinations: number): Promise<void> {
  const jobs = 200;
  const batch = impressions(2000);
  await withContext(Array.from({ length: destinations }, (_, i) => ({ id: `hook-${i}`, url: 'http://127.0.0.1:9/unused' })), async (ctx) => {
    // As ingest leaves them: a stored batch per request, the job naming it.
    const stored = encodeStoredBatch(batch);
    for (let i = 0; i < jobs; i += 20) {
      const ids = Array.from({ length: 20 }, () => randomUUID());
      const multi = ctx.redis.multi();
      for (const id of ids) ctx.batches.writeIn(multi, id, stored);
      await multi.exec();
      await ctx.queues.ingest.addBulk(ids.map((batchId) => ({ name: 'impressions', data: { environmentId: 'env-bench', batchId, count: batch.length } })));
    }
    const workers = startWorkers(ctx);
    await workers.delivery.pause();
    const started = performance.now();
    let done = 0;
    await new Promise<void>((resolve) => workers.routing.on('completed', () => ++done === jobs && resolve()));
    console.log(`  routing, ${destinations} destination(s): ${rate(jobs * batch.length, performance.now() - started)} impressions/s`);
    await workers.close();
  });
}

/** Delivery of inline impressions (the path of replays and backfills; routed work carries references). */
async function delivery(): Promise<void> {
  const sink = fork(fileURLToPath(new URL('./sink.ts', import.meta.url)), { execArgv: ['--import', 'tsx'] });
  const port = await new Promise<number>((resolve) => sink.once('message', (m: { port: number }) => resolve(m.port)));
  const jobs = 80;
  const items = impressions(5000);
  await withContext([{ id: 'hook-0', url: `http://127.0.0.1:${port}/in` }], async (ctx) => {
    for (let i = 0; i < jobs; i += 10) {
      await ctx.queues.delivery.addBulk(Array.from({ length: 10 }, () => ({ name: 'hook-0', data: { destinationId: 'hook-0', environmentId: 'env-bench', items }, opts: { attempts: 3, backoff: { type: 'destination' } } })));
    }
    const started = performance.now();
    const workers = startWorkers(ctx);
    let done = 0;
    await new Promise<void>((resolve) => workers.delivery.on('completed', () => ++done === jobs && resolve()));
    console.log(`  delivery to a signed webhook (batches of 5 000, inline impressions): ${rate(jobs * items.length, performance.now() - started)} impressions/s`);
    await workers.close();
  });
  sink.kill();
}

console.log(`flagstream stage benchmark (${new Date().toISOString()}), one worker process`);
await routing(0);
await routing(1);
await delivery();
