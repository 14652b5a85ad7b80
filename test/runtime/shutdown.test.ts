import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { PrivateRedis } from '../helpers/private-redis.js';
import { ServeProcess } from '../helpers/serve-process.js';
import { uniquePrefix } from '../helpers/redis.js';

const adminToken = 'shutdown-admin-token';
/** Time for the process itself to end after it decided to (exit handlers, a busy machine). */
const slackMs = 3000;

/** Applies the configuration and waits until the process has reloaded it. */
async function configure(serve: ServeProcess, receiverUrl: string): Promise<void> {
  const reloads = () => serve.lines.filter((line) => line.msg === 'configuration reloaded').length;
  const before = reloads();
  const response = await fetch(`${serve.url}/admin/v1/config/apply`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ environments: [{ id: 'env-s', sdkKeys: ['sdk-s'], destinations: [{ id: 'hook-s', type: 'webhook', settings: { url: `${receiverUrl}/s`, maxBatchWait: 0 } }] }] }),
  });
  assert.equal(response.status, 200, await response.text());
  await serve.waitFor(() => reloads() > before, 15_000, 'the configuration to be reloaded');
}

/** Accepts one impression and waits until its delivery is in flight at the (hanging) receiver. */
async function deliveryInFlight(serve: ServeProcess, receiver: HttpReceiver): Promise<string> {
  const response = await fetch(`${serve.url}/v1/impressions`, {
    method: 'POST',
    headers: { authorization: 'Bearer sdk-s', 'content-type': 'application/json' },
    body: JSON.stringify({ impressions: [{ key: 'user-1', split: 'f', treatment: 'on', time: 1718900000000 }] }),
  });
  assert.equal(response.status, 202);
  const [id] = ((await response.json()) as { ids: string[] }).ids;
  await receiver.waitForRequests(1, 15_000);
  return id ?? '';
}

/** A client that sent its headers and a few bytes of a 1000-byte body, and then nothing. */
async function partialBody(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.on('error', () => undefined);
  socket.write('POST /v1/impressions HTTP/1.1\r\nHost: flagstream\r\nAuthorization: Bearer sdk-s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"impressions":[');
  return socket;
}

/** A kept-alive connection that finished one request and stays open. */
async function idleKeptAlive(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => undefined);
  const answered = new Promise((resolve) => socket.once('data', resolve));
  socket.write('GET /healthz HTTP/1.1\r\nHost: flagstream\r\nConnection: keep-alive\r\n\r\n');
  await answered;
  return socket;
}

/** The delivery jobs left in Redis, by state. */
async function deliveryJobs(url: string, prefix: string): Promise<Record<string, number>> {
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  const queue = new Queue('delivery', { connection, prefix: `${prefix}:q` });
  try {
    return await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed');
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

/**
 * `serve` exits within its shutdown bound (FLAGSTREAM_SHUTDOWN_TIMEOUT) whatever it is doing,
 * and what it had accepted stays in Redis. Real processes: the built CLI, a redis-server of the
 * test's own, a hanging receiver, raw sockets.
 */
describe('SIGTERM: serve exits within its bound and loses nothing', () => {
  const started: { serve?: ServeProcess; redis?: PrivateRedis; receiver?: HttpReceiver; sockets: Socket[] } = { sockets: [] };
  afterEach(async () => {
    for (const socket of started.sockets) socket.destroy();
    started.sockets = [];
    await started.serve?.kill();
    await started.redis?.kill();
    await started.receiver?.close();
  });

  test('while Redis is unreachable, a delivery hangs and clients hold connections', async () => {
    const redis = (started.redis = await PrivateRedis.start({ persistent: true }));
    const receiver = (started.receiver = await HttpReceiver.start());
    receiver.respond = () => ({ status: 200, hang: true });
    const prefix = uniquePrefix('shutdown');
    // The default bound (15 s).
    const serve = (started.serve = await ServeProcess.start({ REDIS_URL: redis.url, FLAGSTREAM_REDIS_PREFIX: prefix, ADMIN_TOKEN: adminToken, FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1' }));
    await configure(serve, receiver.url);
    await deliveryInFlight(serve, receiver);
    started.sockets.push(await partialBody(serve.url), await idleKeptAlive(serve.url));

    const from = serve.lines.length;
    await redis.kill();
    await serve.waitFor(() => serve.lines.slice(from).some((line) => line.level >= 40 && /redis/i.test(line.msg)), 15_000, 'serve to notice the outage');
    serve.signal('SIGTERM');
    const exit = await serve.exitWithin(15_000 + slackMs);
    assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)}; stderr: ${serve.stderr}`);

    // Redis back (appendonly): the job in flight is still there, to be re-run once its lock lapses.
    await redis.restart();
    const jobs = await deliveryJobs(redis.url, prefix);
    assert.equal(jobs.completed, 0);
    assert.equal(jobs.failed, 0);
    assert.equal((jobs.waiting ?? 0) + (jobs.active ?? 0) + (jobs.delayed ?? 0) + (jobs.prioritized ?? 0), 1, JSON.stringify(jobs));
  });

  test('while Redis is up, a delivery hangs and a client stalls mid-body', async () => {
    const redis = (started.redis = await PrivateRedis.start());
    const receiver = (started.receiver = await HttpReceiver.start());
    receiver.respond = () => ({ status: 200, hang: true });
    const prefix = uniquePrefix('shutdown');
    const boundMs = 6000;
    const serve = (started.serve = await ServeProcess.start({
      REDIS_URL: redis.url,
      FLAGSTREAM_REDIS_PREFIX: prefix,
      ADMIN_TOKEN: adminToken,
      FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1',
      FLAGSTREAM_SHUTDOWN_TIMEOUT: `${boundMs}ms`,
    }));
    await configure(serve, receiver.url);
    await deliveryInFlight(serve, receiver);
    const slow = await partialBody(serve.url);
    started.sockets.push(slow, await idleKeptAlive(serve.url));
    const slowClosed = new Promise((resolve) => slow.once('close', resolve));

    serve.signal('SIGTERM');
    const exit = await serve.exitWithin(boundMs + slackMs);
    assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)}; stderr: ${serve.stderr}`);
    await slowClosed;

    // The aborted delivery went back to its queue: it will be retried, not lost and not failed.
    const jobs = await deliveryJobs(redis.url, prefix);
    assert.equal(jobs.completed, 0);
    assert.equal(jobs.failed, 0);
    assert.equal((jobs.waiting ?? 0) + (jobs.active ?? 0) + (jobs.delayed ?? 0) + (jobs.prioritized ?? 0), 1, JSON.stringify(jobs));
  });
});
