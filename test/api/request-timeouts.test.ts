import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildServer, closeServer, defaultHttpTimeouts, type HttpTimeouts } from '../../src/api/build-server.js';
import { readEnv } from '../../src/app-config.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { type AppContext, createAppContext } from '../../src/runtime/app-context.js';
import { createTestRedis, deleteKeys, testRedisUrl, uniquePrefix } from '../helpers/redis.js';

const adminToken = 'timeouts-admin-token';

interface RawExchange {
  readonly socket: Socket;
  /** Resolves on the server's first bytes. */
  readonly answered: Promise<void>;
  /** Resolves with everything the server sent once it closed the connection. */
  readonly closed: Promise<string>;
}

/** A raw connection that sends `text` and then nothing. */
async function sendAndStall(app: FastifyInstance, text: string): Promise<RawExchange> {
  const { port } = app.server.address() as { port: number };
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('connect', resolve));
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  const answered = new Promise<void>((resolve) => socket.once('data', () => resolve()));
  const closed = new Promise<string>((resolve) => socket.once('close', () => resolve(received)));
  socket.write(text);
  return { socket, answered, closed };
}

/** Fails instead of hanging: a safety net many times the bound under test, not a measurement. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const partialBody = `POST /admin/v1/config/apply HTTP/1.1\r\nHost: flagstream\r\nAuthorization: Bearer ${adminToken}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"environments":[`;

/** A client cannot hold a connection by sending slowly, nor hold back a shutdown. */
describe('HTTP time bounds', () => {
  const redis = createTestRedis();
  const prefix = uniquePrefix('timeouts');
  let ctx: AppContext;
  const servers: FastifyInstance[] = [];

  const listen = async (timeouts?: Partial<HttpTimeouts>): Promise<FastifyInstance> => {
    const app = buildServer(ctx, { logger: false, ...(timeouts === undefined ? {} : { timeouts }) });
    await app.listen({ port: 0, host: '127.0.0.1' });
    servers.push(app);
    return app;
  };

  before(async () => {
    const env = readEnv({ REDIS_URL: testRedisUrl, ADMIN_TOKEN: adminToken, FLAGSTREAM_REDIS_PREFIX: prefix, FLAGSTREAM_LOG_LEVEL: 'silent' });
    ctx = await createAppContext({ env, logger: pino({ level: 'silent' }), redis, metrics: createMetrics({ defaultMetrics: false }) });
  });
  after(async () => {
    await Promise.all(servers.map((app) => app.close()));
    await ctx.close();
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  test('the server carries the default bounds (node has none for a whole request)', async () => {
    const { server } = await listen();
    assert.equal(server.headersTimeout, defaultHttpTimeouts.headersMs);
    assert.equal(server.requestTimeout, defaultHttpTimeouts.requestMs);
    assert.equal(server.timeout, defaultHttpTimeouts.idleMs);
    assert.equal(server.keepAliveTimeout, defaultHttpTimeouts.keepAliveMs);
    assert.ok(defaultHttpTimeouts.headersMs <= defaultHttpTimeouts.requestMs);
  });

  test('a client that stops in the middle of its body is answered 408 and cut off', async () => {
    const app = await listen({ headersMs: 500, requestMs: 1000, checkEveryMs: 100 });
    const stalled = await sendAndStall(app, partialBody);
    const answer = await within(stalled.closed, 15_000, 'the stalled request');
    assert.match(answer, /^HTTP\/1\.1 408 /);
  });

  test('a client that stops in the middle of its headers is answered 408 and cut off', async () => {
    const app = await listen({ headersMs: 500, requestMs: 1000, checkEveryMs: 100 });
    const stalled = await sendAndStall(app, 'GET /healthz HTTP/1.1\r\nHost: flag');
    const answer = await within(stalled.closed, 15_000, 'the stalled headers');
    assert.match(answer, /^HTTP\/1\.1 408 /);
  });

  test('closing does not wait for a stalled request beyond the grace period', async () => {
    // Default bounds: the request itself would be allowed 30 s.
    const app = await listen();
    const stalled = await sendAndStall(app, partialBody);
    const idle = await sendAndStall(app, 'GET /healthz HTTP/1.1\r\nHost: flagstream\r\n\r\n');
    await within(idle.answered, 5000, 'the kept-alive request');
    await within(closeServer(app, 200), 10_000, 'closing the server');
    await within(stalled.closed, 1000, 'the stalled connection to be closed');
    assert.match(await within(idle.closed, 1000, 'the idle connection to be closed'), /^HTTP\/1\.1 200 /);
  });
});
