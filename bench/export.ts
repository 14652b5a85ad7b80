// `npm run bench:export`: the impressions export's speed and memory over a short and a long time
// range of the same archive (s3rver on this machine), printed, never asserted. Memory must not
// grow with the range: objects are read one at a time and rows written as they are read.
// BENCH_EXPORT_HOURS (24), BENCH_EXPORT_OBJECTS_PER_HOUR (4), BENCH_EXPORT_ROWS_PER_OBJECT (5000),
// BENCH_EXPORT_FORMAT (jsonl | csv | parquet).
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createImpressionsExportService } from '../src/admin/impressions-export-service.js';
import { ConnectorRegistry } from '../src/connectors/registry.js';
import { s3Connector, S3SettingsSchema } from '../src/connectors/s3/s3-connector.js';
import { createDestinationGuard } from '../src/delivery/destination-guard.js';
import { type Impression, impressionId } from '../src/domain/impression.js';
import { buildConfigSnapshot } from '../src/runtime/config-snapshot.js';

type S3rverConstructor = new (options: { address: string; port: number; silent: boolean; directory: string; configureBuckets: { name: string }[] }) => {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
};
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;

const hours = Number(process.env.BENCH_EXPORT_HOURS ?? 24);
const objectsPerHour = Number(process.env.BENCH_EXPORT_OBJECTS_PER_HOUR ?? 4);
const rowsPerObject = Number(process.env.BENCH_EXPORT_ROWS_PER_OBJECT ?? 5000);
const format = process.env.BENCH_EXPORT_FORMAT ?? 'jsonl';
const start = Date.UTC(2026, 10, 20);
const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

const directory = await mkdtemp(join(tmpdir(), 'flagstream-bench-export-'));
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: 'archive' }] });
const { port } = await server.run();
const settings = S3SettingsSchema.parse({ bucket: 'archive', endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, format, ...credentials });
const writer = new S3Client({ region: 'us-east-1', endpoint: settings.endpoint, forcePathStyle: true, credentials });

try {
  process.stdout.write(`writing ${hours} h × ${objectsPerHour} objects × ${rowsPerObject} rows (${format}) …\n`);
  for (let hour = 0; hour < hours; hour += 1) {
    for (let object = 0; object < objectsPerHour; object += 1) {
      const items: Impression[] = Array.from({ length: rowsPerObject }, (_, n) => {
        const fields = { key: `user-${n % 5000}`, split: `flag_${n % 7}`, treatment: n % 2 ? 'on' : 'off', label: 'default rule', time: start + hour * 3_600_000 + object * 1000 + n, splitVersionNumber: 1_718_800_000_000, environmentId: 'env-bench' };
        return { id: impressionId(fields), ...fields, sdk: 'nodejs', sdkVersion: '11.11.0', machineIp: '10.0.0.5', machineName: 'bench', receptionTimestamp: fields.time + 1000 };
      });
      for (const { request } of s3Connector.encode(items, settings, { now: start, destinationId: 'lake' }).requests) {
        await writer.send(new PutObjectCommand({ Bucket: request.bucket, Key: request.key, Body: request.body, ContentType: request.contentType }));
      }
    }
  }

  const registry = new ConnectorRegistry();
  const snapshot = buildConfigSnapshot([{ id: 'env-bench', sdkKeys: [], labelsEnabled: true, unknownFlags: 'track', flags: [], destinations: [{ id: 'lake', type: 's3', enabled: true, settings: { ...settings }, delivery: { retrySchedule: [], timeout: 10_000, circuitBreakerThreshold: 10, circuitBreakerCooldown: 60_000 } }] }], registry, 1);
  const service = createImpressionsExportService({
    config: () => snapshot,
    // Export reads the archive only; queues and the ledger are for backfills.
    partitionFor: () => {
      throw new Error('no backfill here');
    },
    guard: createDestinationGuard(['127.0.0.1']),
    clock: Date.now,
  });

  const gc = (globalThis as { gc?: () => void }).gc;
  for (const span of [2, hours]) {
    gc?.();
    const baseline = process.memoryUsage();
    let peakRss = baseline.rss;
    let peakHeap = baseline.heapUsed + baseline.arrayBuffers;
    const sampler = setInterval(() => {
      const usage = process.memoryUsage();
      peakRss = Math.max(peakRss, usage.rss);
      peakHeap = Math.max(peakHeap, usage.heapUsed + usage.arrayBuffers);
    }, 20);
    let bytes = 0;
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        bytes += chunk.length;
        done();
      },
    });
    const began = performance.now();
    const { stream, done } = service.exportStream(service.resolveQuery({ from: 'lake', since: start, until: start + span * 3_600_000 }), 'jsonl');
    await pipeline(stream, sink);
    const report = await done;
    const seconds = (performance.now() - began) / 1000;
    clearInterval(sampler);
    const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;
    process.stdout.write(
      `${String(span).padStart(3)} h: ${report.rowsMatched} rows from ${report.objects} objects in ${seconds.toFixed(1)} s ` +
        `(${Math.round(report.rowsMatched / seconds)} rows/s, ${mb(bytes)} written); peak RSS +${mb(peakRss - baseline.rss)} (${mb(peakRss)}), peak heap + buffers +${mb(peakHeap - baseline.heapUsed - baseline.arrayBuffers)}\n`,
    );
  }
} finally {
  writer.destroy();
  await server.close();
  await rm(directory, { recursive: true, force: true });
}
