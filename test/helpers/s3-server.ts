import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The parts of s3rver (untyped CommonJS) the tests use. */
interface S3rverServer {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverConstructor = new (options: { address: string; port: number; silent: boolean; directory: string; configureBuckets: { name: string }[] }) => S3rverServer;
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;

/** s3rver's built-in account. */
export const s3Credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/** One request as the store received it (path-style: `/<bucket>/<key>`). */
export interface RecordedS3Request {
  readonly method: string;
  /** The object key (decoded), or '' for a bucket-level request such as a listing. */
  readonly key: string;
  readonly query: URLSearchParams;
  readonly range: string | undefined;
}

export interface LocalS3 {
  /** The recording proxy in front of s3rver: point clients here. */
  readonly endpoint: string;
  readonly requests: RecordedS3Request[];
  /** Most object GETs of different keys that were in flight at once. */
  maxConcurrentObjectReads: number;
  /** ListObjectsV2 requests (GET on the bucket with list-type=2). */
  listings(): RecordedS3Request[];
  /** Keys of object GETs, each once. */
  objectReads(): string[];
  reset(): void;
  close(): Promise<void>;
}

/**
 * s3rver behind a small recording HTTP proxy, so tests see exactly which objects were listed
 * and read (s3rver's own events cover writes only). Path-style addressing only.
 */
export async function startLocalS3(bucket: string): Promise<LocalS3> {
  const directory = await mkdtemp(join(tmpdir(), 'flagstream-s3-'));
  const store = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket }] });
  const { port: storePort } = await store.run();
  const inFlight = new Map<string, number>();
  const local: LocalS3 = {
    endpoint: '',
    requests: [],
    maxConcurrentObjectReads: 0,
    listings: () => local.requests.filter((r) => r.method === 'GET' && r.key === '' && r.query.get('list-type') === '2'),
    objectReads: () => [...new Set(local.requests.filter((r) => r.method === 'GET' && r.key !== '').map((r) => r.key))],
    reset() {
      local.requests.length = 0;
      local.maxConcurrentObjectReads = 0;
    },
    async close() {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      await store.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
  const proxy = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://proxy');
    const [, , ...keyParts] = url.pathname.split('/');
    const key = decodeURIComponent(keyParts.join('/'));
    const range = request.headers.range;
    local.requests.push({ method: request.method ?? '', key, query: url.searchParams, range: typeof range === 'string' ? range : undefined });
    const reading = request.method === 'GET' && key !== '';
    if (reading) {
      inFlight.set(key, (inFlight.get(key) ?? 0) + 1);
      local.maxConcurrentObjectReads = Math.max(local.maxConcurrentObjectReads, inFlight.size);
    }
    let finished = false;
    const done = () => {
      if (!reading || finished) return;
      finished = true;
      const left = (inFlight.get(key) ?? 1) - 1;
      if (left === 0) inFlight.delete(key);
      else inFlight.set(key, left);
    };
    const upstream = http.request({ host: '127.0.0.1', port: storePort, method: request.method, path: request.url, headers: request.headers }, (answer) => {
      response.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(response);
    });
    upstream.on('error', (error) => response.destroy(error));
    // Answered, or given up by the client: either way this read is over.
    response.on('close', () => {
      done();
      upstream.destroy();
    });
    request.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  (local as { endpoint: string }).endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  return local;
}
