// A `--role worker` process for the benchmark's split mode: same Redis prefix, workers only.
import { pino } from 'pino';
import { readEnv } from '../src/app-config.js';
import { createMetrics } from '../src/observability/metrics.js';
import { createAppContext } from '../src/runtime/app-context.js';
import { startWorkers } from '../src/worker/start-workers.js';
import { createTestRedis } from '../test/helpers/redis.js';

const env = readEnv();
const ctx = await createAppContext({ env, logger: pino({ level: 'warn' }), redis: createTestRedis(), metrics: createMetrics({ defaultMetrics: false }) });
const workers = startWorkers(ctx);
process.send?.('ready');
process.on('message', async () => {
  await workers.close();
  await ctx.close();
  process.exit(0);
});
