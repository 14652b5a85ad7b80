// A local destination for the benchmark, run as its own process (forked by bench/run.ts) so it
// does not compete with flagstream for an event loop. Three kinds, chosen by BENCH_SINK (JSON):
//   webhook  Standard Webhooks receiver: verifies every signature, body = JSON array of impressions
//   segment  Segment's batch API (`POST …/v1/batch`): checks the write key, one event per impression
//   s3       s3rver (path-style S3, SigV4 checked by s3rver): reads each object written (jsonl, gzip)
// Each counts UNIQUE impression ids per path (one path per destination) and records
// now − receptionTimestamp for each. In failing mode (webhook) it answers 503 and only records
// which ids were attempted.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { ArrivalTimeline, FingerprintSet, LatencyHistogram } from './counting.js';
import type { Question, SinkCounts, SinkKind, SinkReport } from './messages.js';

interface SinkOptions {
  readonly kind: SinkKind;
  /** webhook: `whsec_…` signing secret. */
  readonly secret?: string;
  /** segment: the write key expected in `Authorization: Basic`. */
  readonly writeKey?: string;
  /** s3: the bucket to create. */
  readonly bucket?: string;
}

const options = JSON.parse(process.env.BENCH_SINK ?? '{}') as SinkOptions;

/** What arrived since the last reset. */
class Tally {
  readonly seen = new FingerprintSet();
  readonly attemptedIds = new FingerprintSet();
  readonly perPath = new Map<string, number>();
  readonly latency = new LatencyHistogram();
  readonly timeline = new ArrivalTimeline(Date.now());
  requests = 0;
  invalidSignatures = 0;
  duplicates = 0;

  /** Counts one delivered impression; `now` is when its request (or object) arrived. */
  delivered(path: string, id: string, receptionTimestamp: unknown, now: number): boolean {
    if (!this.seen.add(`${path}\n${id}`)) {
      this.duplicates += 1;
      return false;
    }
    this.perPath.set(path, (this.perPath.get(path) ?? 0) + 1);
    if (typeof receptionTimestamp === 'number') this.latency.record(now - receptionTimestamp);
    return true;
  }

  counts(): SinkCounts {
    return {
      unique: this.seen.size,
      perPath: Object.fromEntries(this.perPath),
      attempted: this.attemptedIds.size,
      requests: this.requests,
      invalidSignatures: this.invalidSignatures,
      duplicates: this.duplicates,
    };
  }

  report(): SinkReport {
    return {
      kind: options.kind,
      ...this.counts(),
      latencyMs: this.latency.summary(),
      firstArrival: this.timeline.first,
      lastArrival: this.timeline.last,
      timeline: this.timeline.export(),
    };
  }
}

let tally = new Tally();
let failing = false;

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Standard Webhooks v1: `webhook-signature` lists `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`. */
function signatureValid(secretKey: Buffer, headers: http.IncomingHttpHeaders, body: Buffer): boolean {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (typeof id !== 'string' || typeof timestamp !== 'string' || typeof signatures !== 'string') return false;
  // Standard Webhooks receivers refuse timestamps more than 5 minutes away.
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
  const expected = createHmac('sha256', secretKey).update(`${id}.${timestamp}.`).update(body).digest();
  return signatures.split(' ').some((entry) => {
    const [version, signature] = entry.split(',');
    if (version !== 'v1' || signature === undefined) return false;
    const given = Buffer.from(signature, 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

function pathOf(req: http.IncomingMessage): string {
  return new URL(req.url ?? '/', 'http://sink').pathname;
}

async function webhookServer(secret: string): Promise<http.Server> {
  const secretKey = Buffer.from(secret.slice('whsec_'.length), 'base64');
  return http.createServer(async (req, res) => {
    const body = await readBody(req).catch(() => undefined);
    if (body === undefined) return;
    const now = Date.now();
    tally.requests += 1;
    if (!signatureValid(secretKey, req.headers, body)) {
      tally.invalidSignatures += 1;
      res.writeHead(401).end();
      return;
    }
    const path = pathOf(req);
    const impressions = JSON.parse(body.toString('utf8')) as { id: string; receptionTimestamp?: number }[];
    if (failing) {
      for (const { id } of impressions) tally.attemptedIds.add(`${path}\n${id}`);
      res.writeHead(503, { 'content-type': 'text/plain' }).end('failing on purpose');
      return;
    }
    let fresh = 0;
    for (const { id, receptionTimestamp } of impressions) if (tally.delivered(path, id, receptionTimestamp, now)) fresh += 1;
    tally.timeline.record(now, fresh);
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  });
}

async function segmentServer(writeKey: string): Promise<http.Server> {
  const expected = `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`;
  return http.createServer(async (req, res) => {
    const body = await readBody(req).catch(() => undefined);
    if (body === undefined) return;
    const now = Date.now();
    tally.requests += 1;
    if (req.headers.authorization !== expected) {
      tally.invalidSignatures += 1;
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"unauthorized"}');
      return;
    }
    // `/<destination>/v1/batch`: the part before /v1/batch tells destinations apart.
    const path = pathOf(req).replace(/\/v1\/batch$/, '') || '/';
    const { batch } = JSON.parse(body.toString('utf8')) as { batch: { messageId: string; properties?: { receptionTimestamp?: number } }[] };
    let fresh = 0;
    for (const event of batch) if (tally.delivered(path, event.messageId, event.properties?.receptionTimestamp, now)) fresh += 1;
    tally.timeline.record(now, fresh);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"success":true}');
  });
}

/** The parts of s3rver (untyped CommonJS) used here. */
interface S3rverServer {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  on(event: 'event', listener: (event: { Records: { eventName: string; s3: { object: { key: string } } }[] }) => void): void;
}
type S3rverConstructor = new (options: { address: string; port: number; silent: boolean; directory: string; configureBuckets: { name: string }[] }) => S3rverServer;

async function s3Server(bucket: string): Promise<{ url: string; close: () => Promise<void> }> {
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
  const directory = mkdtempSync(join(process.env.BENCH_SCRATCH ?? tmpdir(), 's3-'));
  const store = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket }] });
  const { port } = await store.run();
  const url = `http://127.0.0.1:${port}`;
  const client = new S3Client({ endpoint: url, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  // Objects are read one after another, in the order written: reading competes with nothing else here.
  let reading = Promise.resolve();
  store.on('event', (event) => {
    const record = event.Records[0];
    if (record === undefined || !record.eventName.startsWith('ObjectCreated')) return;
    const now = Date.now();
    // s3rver puts the key as written (not URL-encoded as AWS does).
    const key = record.s3.object.key;
    const current = tally;
    current.requests += 1;
    reading = reading.then(async () => {
      const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const bytes = Buffer.from(await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
      const text = (key.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8');
      // `<destination>/env=…/…`: the first segment of the key tells destinations apart.
      const path = `/${key.split('/')[0]}`;
      let fresh = 0;
      for (const line of text.split('\n')) {
        if (line === '') continue;
        const row = JSON.parse(line) as { impressionId: string; receptionTimestamp: number };
        if (current.delivered(path, row.impressionId, row.receptionTimestamp, now)) fresh += 1;
      }
      current.timeline.record(now, fresh);
    }).catch((error: unknown) => void process.stderr.write(`s3 sink: reading ${key} failed: ${String(error)}\n`));
  });
  return {
    url,
    async close() {
      await store.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

async function start(): Promise<{ url: string; close: () => Promise<void> }> {
  if (options.kind === 's3') return s3Server(options.bucket ?? 'bench');
  const server = options.kind === 'webhook' ? await webhookServer(options.secret ?? '') : await segmentServer(options.writeKey ?? '');
  server.keepAliveTimeout = 75_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const running = await start();
process.on('message', (question: Question<'reset' | 'counts' | 'report' | 'stop'> & { failing?: boolean }) => {
  switch (question.type) {
    case 'reset':
      tally = new Tally();
      failing = question.failing === true;
      process.send?.({ replyTo: question.id });
      break;
    case 'counts':
      process.send?.({ replyTo: question.id, ...tally.counts() });
      break;
    case 'report':
      process.send?.({ replyTo: question.id, ...tally.report() });
      break;
    case 'stop':
      void running.close().finally(() => process.exit(0));
      break;
  }
});
// The parent is gone (killed, crashed): do not outlive it.
process.on('disconnect', () => void running.close().finally(() => process.exit(0)));
process.send?.({ type: 'listening', url: running.url });
