// The baseline of `npm run bench`: the design a user writes by hand with BullMQ, for the same
// load as flagstream. The API takes the same Split SDK bulk requests and adds one job per
// impression per destination; a worker delivers each job alone, one signed webhook POST per
// impression (a JSON array of one, so the same sink counts it). Reads the same YAML
// configuration as `flagstream serve` (environments, sdkKeys, webhook destinations).
//
//   node --import tsx bench/naive.ts --role all|api|worker --config FILE [--port N]
//   env: REDIS_URL, NAIVE_PREFIX, NAIVE_CONCURRENCY (64), NAIVE_RETRY_DELAY_MS (exponential from 1000)
import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { parse } from 'yaml';

interface WebhookDestination {
  readonly id: string;
  readonly url: string;
  readonly secret: string;
}
interface Environment {
  readonly id: string;
  readonly name?: string;
  readonly sdkKeys?: string[];
  readonly destinations?: { id: string; type: string; settings: { url: string; secret: string } }[];
}
interface Impression {
  readonly id: string;
  readonly key: string;
  readonly split: string;
  readonly treatment: string;
  readonly label?: string;
  readonly time: number;
  readonly splitVersionNumber?: number;
  readonly environmentId: string;
  readonly environmentName: string;
  readonly sdkVersion?: string;
  readonly machineIp?: string;
  readonly machineName?: string;
  readonly receptionTimestamp: number;
}
interface DeliveryJob {
  readonly destinationId: string;
  readonly impression: Impression;
}
type BulkBody = { f: string; i: { k: string; t: string; m: number; c?: number; r?: string; b?: string }[] }[];

const { values: args } = parseArgs({ options: { role: { type: 'string', default: 'all' }, config: { type: 'string' }, port: { type: 'string', default: '8080' } } });
const role = args.role as 'all' | 'api' | 'worker';
const config = parse(readFileSync(args.config ?? 'flagstream.yaml', 'utf8')) as { environments: Environment[] };
const environmentByKey = new Map<string, Environment>();
const destinationsOf = new Map<string, WebhookDestination[]>();
const destinationById = new Map<string, WebhookDestination>();
for (const environment of config.environments) {
  for (const key of environment.sdkKeys ?? []) environmentByKey.set(key, environment);
  const hooks = (environment.destinations ?? []).filter((d) => d.type === 'webhook').map((d) => ({ id: d.id, url: d.settings.url, secret: d.settings.secret }));
  destinationsOf.set(environment.id, hooks);
  for (const hook of hooks) destinationById.set(hook.id, hook);
}

const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = process.env.NAIVE_PREFIX ?? 'naive';
const retryDelayMs = Number(process.env.NAIVE_RETRY_DELAY_MS ?? 0);
const connection = () => new Redis(redisUrl, { maxRetriesPerRequest: null });

function sign(secret: string, id: string, timestamp: string, body: string): string {
  return `v1,${createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64')).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

function startApi(): http.Server {
  const queue = new Queue<DeliveryJob>('deliveries', { connection: connection(), prefix });
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/readyz') return void res.writeHead(200).end('ok');
    if (req.method !== 'POST' || req.url !== '/api/testImpressions/bulk') return void res.writeHead(404).end();
    const environment = environmentByKey.get((req.headers.authorization ?? '').replace(/^Bearer\s+/i, ''));
    if (environment === undefined) return void res.writeHead(401).end();
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      let groups: BulkBody;
      try {
        groups = JSON.parse(Buffer.concat(chunks).toString('utf8')) as BulkBody;
        if (!Array.isArray(groups)) throw new Error('expected an array');
      } catch (error) {
        return void res.writeHead(400).end(String(error));
      }
      const receptionTimestamp = Date.now();
      const header = (name: string) => (typeof req.headers[name] === 'string' ? (req.headers[name] as string) : undefined);
      const jobs: { name: string; data: DeliveryJob; opts: object }[] = [];
      const destinations = destinationsOf.get(environment.id) ?? [];
      for (const group of groups) {
        for (const item of group.i) {
          const id = createHash('sha256').update(JSON.stringify([environment.id, group.f, item.k, item.b, item.t, item.r, item.m, item.c])).digest('base64url').slice(0, 32);
          const impression: Impression = {
            id,
            key: item.k,
            split: group.f,
            treatment: item.t,
            ...(item.r === undefined ? {} : { label: item.r }),
            time: item.m,
            ...(item.c === undefined ? {} : { splitVersionNumber: item.c }),
            environmentId: environment.id,
            environmentName: environment.name ?? environment.id,
            ...(header('splitsdkversion') === undefined ? {} : { sdkVersion: header('splitsdkversion') }),
            ...(header('splitsdkmachineip') === undefined ? {} : { machineIp: header('splitsdkmachineip') }),
            ...(header('splitsdkmachinename') === undefined ? {} : { machineName: header('splitsdkmachinename') }),
            receptionTimestamp,
          };
          for (const destination of destinations) {
            jobs.push({
              name: destination.id,
              data: { destinationId: destination.id, impression },
              opts: {
                attempts: 8,
                backoff: retryDelayMs > 0 ? { type: 'fixed', delay: retryDelayMs } : { type: 'exponential', delay: 1000 },
                removeOnComplete: true,
                removeOnFail: 1000,
              },
            });
          }
        }
      }
      try {
        await queue.addBulk(jobs);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } catch (error) {
        res.writeHead(503).end(String(error));
      }
    });
  });
  server.listen(Number(args.port), '127.0.0.1', () => console.log(JSON.stringify({ msg: 'naive api listening', port: args.port })));
  return server;
}

function startWorker(): Worker<DeliveryJob> {
  const worker = new Worker<DeliveryJob>(
    'deliveries',
    async (job) => {
      const destination = destinationById.get(job.data.destinationId);
      if (destination === undefined) throw new Error(`unknown destination ${job.data.destinationId}`);
      const body = JSON.stringify([job.data.impression]);
      const messageId = `msg_${job.data.impression.id}`;
      const timestamp = String(Math.floor(Date.now() / 1000));
      const response = await fetch(destination.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'webhook-id': messageId, 'webhook-timestamp': timestamp, 'webhook-signature': sign(destination.secret, messageId, timestamp, body) },
        body,
        signal: AbortSignal.timeout(10_000),
      });
      await response.arrayBuffer();
      if (!response.ok) throw new Error(`destination answered ${response.status}`);
    },
    { connection: connection(), prefix, concurrency: Number(process.env.NAIVE_CONCURRENCY ?? 64) },
  );
  void worker.waitUntilReady().then(() => console.log(JSON.stringify({ msg: 'naive worker started' })));
  return worker;
}

const server = role === 'worker' ? undefined : startApi();
const worker = role === 'api' ? undefined : startWorker();
const stop = async () => {
  server?.close();
  await worker?.close();
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
