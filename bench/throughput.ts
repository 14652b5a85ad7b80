// `npm run bench`: end-to-end throughput of flagstream on this machine, printed, never asserted.
// Ingest (real HTTP, Split SDK bulk format) → BullMQ/Redis → routing → delivery over a signed
// webhook to a receiver in another process. Figures: accepted impressions/s at ingest,
// delivered impressions/s end to end, peak RSS of the flagstream process. BENCH_PROFILE=1 writes
// CPU profiles of the worker processes (split mode) to /tmp/prof2.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { createConfigService } from '../src/admin/config-service.js';
import { createDestinationGuard } from '../src/delivery/destination-guard.js';
import { buildServer } from '../src/api/build-server.js';
import { readEnv } from '../src/app-config.js';
import { createMetrics } from '../src/observability/metrics.js';
import { createAppContext } from '../src/runtime/app-context.js';
import { startWorkers } from '../src/worker/start-workers.js';
import { createTestRedis, deleteKeys, uniquePrefix } from '../test/helpers/redis.js';

const total = Number(process.env.BENCH_IMPRESSIONS ?? 400_000);
const perRequest = Number(process.env.BENCH_PER_REQUEST ?? 2000);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 4);
const destinations = Number(process.env.BENCH_DESTINATIONS ?? 1);
/** 0: API and workers in this one process (`serve --role all`); N: the API here and N worker processes (`--role worker`). */
const workerProcesses = Number(process.env.BENCH_WORKER_PROCESSES ?? 0);

const sink = fork(fileURLToPath(new URL('./sink.ts', import.meta.url)), { execArgv: ['--import', 'tsx'] });
let delivered = 0;
const sinkPort = await new Promise<number>((resolve) => sink.once('message', (m: { port: number }) => resolve(m.port)));
const deliveredAll = new Promise<number>((resolve) => {
  sink.on('message', (m: { impressions: number }) => {
    delivered = m.impressions;
    if (delivered >= total * destinations) resolve(performance.now());
  });
});

const prefix = uniquePrefix('bench');
const env = readEnv({ ...process.env, FLAGSTREAM_REDIS_PREFIX: prefix, FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1', FLAGSTREAM_LOG_LEVEL: 'warn', FLAGSTREAM_INGEST_BACKLOG_LIMIT: '100000' });
const redis = createTestRedis();
const logger = pino({ level: 'warn' });
const ctx = await createAppContext({ env, logger, redis, metrics: createMetrics({ defaultMetrics: false }) });
await createConfigService({ store: ctx.configStore, registry: ctx.registry, destinationGuard: createDestinationGuard(env.FLAGSTREAM_DESTINATION_ALLOWLIST) }).apply({
  environments: [
    {
      id: 'env-bench',
      sdkKeys: ['bench-key'],
      flags: [{ name: 'flag_0', trackImpressions: true }, { name: 'flag_off', trackImpressions: false }],
      destinations: Array.from({ length: destinations }, (_, i) => ({
        id: `sink-${i}`,
        type: 'webhook',
        settings: { url: `http://127.0.0.1:${sinkPort}/in`, secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', batchSize: 5000, maxBodyBytes: 20_000_000, maxBatchWait: 200 },
      })),
    },
  ],
});
await ctx.config.refresh();
const server = buildServer(ctx, { logger });
const address = await server.listen({ port: 0, host: '127.0.0.1' });
const workers = workerProcesses === 0 ? startWorkers(ctx) : undefined;
const children = await Promise.all(
  Array.from({ length: workerProcesses }, async () => {
    const child = fork(fileURLToPath(new URL('./worker-process.ts', import.meta.url)), { execArgv: process.env.BENCH_PROFILE ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof2', '--import', 'tsx'] : ['--import', 'tsx'], env: { ...process.env, FLAGSTREAM_REDIS_PREFIX: prefix, FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1', FLAGSTREAM_LOG_LEVEL: 'warn' } });
    await new Promise((resolve) => child.once('message', resolve));
    return child;
  }),
);

const started = performance.now();
let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
const progress = process.env.BENCH_VERBOSE
  ? setInterval(async () => {
      const [i, d] = [await ctx.queues.ingest.getJobCounts('waiting', 'active'), await ctx.queues.delivery.getJobCounts('waiting', 'active', 'delayed')];
      console.error(`${Math.round(performance.now() - started)}ms delivered ${delivered} ingest ${JSON.stringify(i)} delivery ${JSON.stringify(d)}`);
    }, 500)
  : undefined;

function bulkBody(batch: number): string {
  const start = batch * perRequest;
  const groups = [{ f: 'flag_0', i: Array.from({ length: perRequest }, (_, j) => ({ k: `user-${start + j}`, t: j % 2 ? 'on' : 'off', m: 1_718_900_000_000 + start + j, c: 1_718_800_000_000, r: 'default rule' })) }];
  return JSON.stringify(groups);
}

const requests = Math.ceil(total / perRequest);
const bodies = Array.from({ length: Math.min(requests, 50) }, (_, i) => bulkBody(i));
let next = 0;
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < requests) {
      const index = next++;
      for (;;) {
        const response = await fetch(`${address}/api/testImpressions/bulk`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer bench-key', SplitSDKVersion: 'nodejs-11.11.0', SplitSDKMachineIP: '10.0.0.5', SplitSDKMachineName: 'bench' },
          body: bodies[index % bodies.length] as string,
        });
        await response.arrayBuffer();
        if (response.status === 200) break;
        if (response.status !== 503) throw new Error(`ingest answered ${response.status}`);
        await new Promise((resolve) => setTimeout(resolve, 50)); // backlog full: back off as an SDK would
      }
    }
  }),
);
const ingested = performance.now();
const finished = await deliveredAll;
clearInterval(sampler);
if (progress) clearInterval(progress);

const seconds = (ms: number) => ms / 1000;
const rate = (n: number, ms: number) => Math.round(n / seconds(ms)).toLocaleString('en-US');
console.log(`flagstream benchmark (${new Date().toISOString()})`);
console.log(`  impressions: ${total.toLocaleString('en-US')} in ${requests} Split SDK bulk requests of ${perRequest}, ${concurrency} concurrent; ${destinations} webhook destination(s)`);
console.log(`  layout: ${workerProcesses === 0 ? 'one process (serve --role all)' : `API process + ${workerProcesses} worker process(es)`}; ${(await import('node:os')).cpus().length} cores`);
console.log(`  ingest (validated, enqueued, answered): ${rate(total, ingested - started)} impressions/s`);
console.log(`  end to end (ingest → route → signed webhook delivered): ${rate(total * destinations, finished - started)} deliveries/s, ${seconds(finished - started).toFixed(2)} s`);
console.log(`  peak RSS of the ${workerProcesses === 0 ? 'flagstream' : 'API'} process: ${Math.round(peakRss / 1024 / 1024)} MiB`);

await server.close();
await workers?.close();
await Promise.all(children.map((child) => new Promise((resolve) => {
  child.once('exit', resolve);
  child.send('stop');
})));
await ctx.close();
await deleteKeys(redis, prefix);
redis.disconnect();
sink.kill();
