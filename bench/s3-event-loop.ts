// `npm run bench:s3`: how long the event loop stalls while one 50 000-row S3 batch is encoded and
// written (s3rver in another process), with the objects built on the main thread (the connector's
// synchronous `encode`, as before) and in the S3 encode thread (`encodeOffLoop`, what the
// delivery core uses). Printed, never asserted. Event-loop delay from perf_hooks'
// monitorEventLoopDelay (10 ms resolution): p99 and max of the stalls it saw, in ms.
// BENCH_S3_ROWS (50000), BENCH_S3_RUNS (3), BENCH_S3_FORMATS ("jsonl:gzip,parquet:gzip").
import { fork } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { S3Client } from '@aws-sdk/client-s3';
import type { AnyConnector } from '../src/connectors/connector.js';
import { closeS3EncodeThread } from '../src/connectors/s3/s3-encode-thread.js';
import { s3Connector, type S3Settings, S3SettingsSchema } from '../src/connectors/s3/s3-connector.js';
import { deliverBatch } from '../src/delivery/deliver-batch.js';
import { createDestinationGuard } from '../src/delivery/destination-guard.js';
import { createHttpTransport } from '../src/delivery/http-transport.js';
import { type Impression, impressionId } from '../src/domain/impression.js';

const rows = Number(process.env.BENCH_S3_ROWS ?? 50_000);
const runs = Number(process.env.BENCH_S3_RUNS ?? 3);
const formats = (process.env.BENCH_S3_FORMATS ?? 'jsonl:gzip,parquet:gzip').split(',').map((pair) => {
  const [format, compression] = pair.split(':');
  return { format, compression: compression ?? 'gzip' };
});
const bucket = 'bench';
const hourStart = Date.UTC(2026, 10, 20, 14);

// One environment and hour: the whole batch is one object, the biggest S3 ever gets.
const items: Impression[] = Array.from({ length: rows }, (_, n) => {
  const fields = { key: `user-${n % 20_000}`, split: `flag_${n % 40}`, treatment: n % 3 === 0 ? 'off' : 'on', label: 'default rule', time: hourStart + Math.floor((n * 3_599_000) / rows), splitVersionNumber: 1_718_800_000_000 + (n % 5), environmentId: 'env-bench' };
  return {
    id: impressionId(fields),
    ...fields,
    ...(n % 4 === 0 ? { properties: JSON.stringify({ plan: 'pro', seats: n % 50 }) } : {}),
    bucketingKey: `account-${n % 900}`,
    trafficTypeId: 'tt-user',
    sdk: 'nodejs',
    sdkVersion: '11.11.0',
    machineIp: '10.0.0.5',
    machineName: `web-${n % 8}`,
    receptionTimestamp: fields.time + 800,
  };
});

const store = fork(fileURLToPath(new URL('./s3-store.ts', import.meta.url)), [bucket], { execArgv: ['--import', 'tsx'] });
const port = await new Promise<number>((resolve) => store.once('message', (message: { port: number }) => resolve(message.port)));
const transport = createHttpTransport({ guard: createDestinationGuard(['127.0.0.1']), userAgent: 'flagstream-bench' });

/** The connector as it was: no encodeOffLoop, so the delivery core calls the synchronous encode. */
const onMainThread: AnyConnector = { ...s3Connector, encodeOffLoop: undefined };

interface Figures {
  readonly p99: number;
  readonly max: number;
  readonly wallMs: number;
}

async function measure(work: () => Promise<unknown>): Promise<Figures> {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  // The histogram records the gap between two of its ticks: the first tick must come before the work.
  await new Promise((resolve) => setTimeout(resolve, 30));
  const started = performance.now();
  await work();
  const wallMs = performance.now() - started;
  // A stall is recorded by the first timer tick after it: let that tick (and any trailing work) run.
  await new Promise((resolve) => setTimeout(resolve, 100));
  delay.disable();
  return { p99: delay.percentile(99) / 1e6, max: delay.max / 1e6, wallMs };
}

async function writeBatch(connector: AnyConnector, settings: S3Settings, client: unknown): Promise<void> {
  const settlement = await deliverBatch(
    items,
    { destinationId: 'lake', connector, settings, limits: connector.limits(settings), client, timeoutMs: 60_000, maxConcurrentRequests: 4 },
    { now: Date.now, quickRetries: 0 },
  );
  if (settlement.delivered !== rows) throw new Error(`delivered ${settlement.delivered} of ${rows}: ${settlement.lastFailure?.reason ?? ''}`);
}

const clients: S3Client[] = [];
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
const ms = (value: number): string => value.toFixed(1).padStart(7);

/** A connector that encodes nothing and sends nothing: what is left is the delivery core's own work per impression. */
const bookkeepingOnly: AnyConnector = {
  ...s3Connector,
  encodeOffLoop: undefined,
  encode: (batch: readonly Impression[]) => ({ requests: [{ itemIds: batch.map((item) => item.id), bytes: 0, request: {} }], rejected: [], skipped: [] }),
  send: async () => ({ key: '', status: 200 }),
};

async function report(label: string, work: () => Promise<unknown>): Promise<void> {
  await work(); // warm-up: JIT, the thread's start, the store's first write
  const figures: Figures[] = [];
  for (let run = 0; run < runs; run += 1) figures.push(await measure(work));
  process.stdout.write(`${label.padEnd(52)} ${ms(median(figures.map((f) => f.p99)))} ${ms(median(figures.map((f) => f.max)))} ${ms(median(figures.map((f) => f.wallMs)))}\n`);
}

try {
  process.stdout.write(`${rows} rows in one object, ${runs} runs each (median shown), event-loop delay in ms\n`);
  process.stdout.write(`${'case'.padEnd(52)}     p99     max    wall\n`);
  await report('nothing, 1 s (the machine’s own noise)', () => new Promise((resolve) => setTimeout(resolve, 1_000)));
  const noSettings = S3SettingsSchema.parse({ bucket });
  await report('deliverBatch, bookkeeping only (no encode, no PUT)', () => writeBatch(bookkeepingOnly, noSettings, undefined));
  for (const { format, compression } of formats) {
    const settings = S3SettingsSchema.parse({ bucket, endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, format, compression, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });
    const context = { now: Date.now(), destinationId: 'lake' };
    // The delivery processor keeps a client per destination: made once, outside the figures.
    const client = s3Connector.createClient(settings, { http: transport });
    clients.push(client);
    const name = `${format}${compression === 'gzip' ? '.gz' : ''}`;
    await report(`${name} encode, main thread (before)`, async () => s3Connector.encode(items, settings, context));
    await report(`${name} encodeOffLoop, S3 encode thread (now)`, () => s3Connector.encodeOffLoop?.(items, settings, context) ?? Promise.resolve());
    await report(`${name} deliverBatch: encode + PUT (before)`, () => writeBatch(onMainThread, settings, client));
    await report(`${name} deliverBatch: encodeOffLoop + PUT (now)`, () => writeBatch(s3Connector, settings, client));
  }
} finally {
  for (const client of clients) await s3Connector.closeClient?.(client);
  transport.close();
  await closeS3EncodeThread();
  store.disconnect();
}
