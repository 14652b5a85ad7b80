import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../src/api/build-server.js';
import type { ConfigurationInput } from '../../src/domain/configuration.js';
import type { TailEvent } from '../../src/routing/live-tail.js';
import { createTailPublisher, createTailSubscriptions } from '../../src/stores/live-tail-store.js';
import { deploymentKeys } from '../../src/stores/redis-keys.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { createTestRedis, deleteKeys, uniquePrefix } from '../helpers/redis.js';
import { SseClient } from '../helpers/sse-client.js';
import { adminToken, postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

const sdk = { authorization: 'Bearer prod-sdk-key' };
const auth = { authorization: `Bearer ${adminToken}` };

function configuration(receiverUrl: string): ConfigurationInput {
  return {
    environments: [
      {
        id: 'env-prod',
        sdkKeys: ['prod-sdk-key'],
        flags: [
          { name: 'new_checkout', trafficType: 'user', trackImpressions: true },
          { name: 'quiet_flag', trafficType: 'user', trackImpressions: false },
        ],
        destinations: [
          { id: 'hook-all', type: 'webhook', settings: { url: `${receiverUrl}/all` } },
          { id: 'hook-banner', type: 'webhook', settings: { url: `${receiverUrl}/banner` }, filters: { flags: ['banner*'] } },
        ],
      },
    ],
  };
}

describe('live tail: impressions as they are routed, over server-sent events', () => {
  let app: TestApp;
  let receiver: HttpReceiver;
  const viewers: SseClient[] = [];
  const servers: FastifyInstance[] = [];
  let routings = 0;

  const tail = (query = '', base = app.url) => {
    const client = new SseClient(`${base}/admin/v1/environments/env-prod/tail${query}`, auth);
    viewers.push(client);
    return client;
  };
  const send = async (impressions: Record<string, unknown>[]) => {
    const response = await postJson(`${app.url}/v1/impressions`, { impressions }, sdk);
    assert.equal(response.status, 202, JSON.stringify(response.body));
    routings += 1;
  };
  const impressionsOf = (client: SseClient) => client.of('impression') as TailEvent[];

  before(async () => {
    receiver = await HttpReceiver.start();
    // Routing asks on every job whether anyone watches (1 s in production), so a test needs no wait.
    app = await startTestApp({ workerOptions: { tailCheckIntervalMs: 0 } });
    await app.apply(configuration(receiver.url));
  });
  after(async () => {
    for (const viewer of viewers) viewer.close();
    for (const server of servers) await server.close();
    await app.close();
    await receiver.close();
  });

  test('a viewer sees tracked impressions with their destinations and dropped ones with the reason', async () => {
    const viewer = tail();
    await viewer.ready();
    assert.equal(viewer.status, 200);
    await send([
      { key: 'user-1', split: 'new_checkout', treatment: 'on', time: Date.now() },
      { key: 'user-2', split: 'quiet_flag', treatment: 'off', time: Date.now() },
      { key: 'user-3', split: 'banner_color', treatment: 'blue', time: Date.now() },
    ]);
    await viewer.waitFor(() => impressionsOf(viewer).length >= 3, 'three impressions');
    const [tracked, dropped, banner] = impressionsOf(viewer);
    assert.equal(tracked?.outcome, 'tracked');
    assert.deepEqual(tracked?.destinations, ['hook-all']);
    assert.equal(tracked?.impression.key, 'user-1');
    assert.equal(tracked?.impression.trafficTypeName, 'user');
    assert.equal(tracked?.environmentId, 'env-prod');
    assert.ok(!Number.isNaN(Date.parse(tracked?.routedAt ?? '')));
    assert.deepEqual({ outcome: dropped?.outcome, reason: dropped?.reason, destinations: dropped?.destinations, key: dropped?.impression.key }, { outcome: 'dropped', reason: 'tracking_off', destinations: [], key: 'user-2' });
    assert.deepEqual([...(banner?.destinations ?? [])].sort(), ['hook-all', 'hook-banner']);
    viewer.close();
  });

  test('filters by flag, treatment and key show only what matches', async () => {
    const filtered = tail('?flag=new_checkout&treatment=off&key=user-9');
    await filtered.ready();
    await send([
      { key: 'user-9', split: 'new_checkout', treatment: 'off', time: Date.now() },
      { key: 'user-9', split: 'new_checkout', treatment: 'on', time: Date.now() },
      { key: 'user-8', split: 'new_checkout', treatment: 'off', time: Date.now() },
      { key: 'user-9', split: 'quiet_flag', treatment: 'off', time: Date.now() },
    ]);
    // A second matching impression in a later job: once it is seen, everything before it has been.
    await send([{ key: 'user-9', split: 'new_checkout', treatment: 'off', time: Date.now() + 1 }]);
    await filtered.waitFor(() => impressionsOf(filtered).length >= 2, 'two matching impressions');
    await app.waitForRoutings(routings);
    assert.deepEqual(
      impressionsOf(filtered).map((e) => [e.impression.split, e.impression.treatment, e.impression.key]),
      [
        ['new_checkout', 'off', 'user-9'],
        ['new_checkout', 'off', 'user-9'],
      ],
    );
    filtered.close();
  });

  test('nobody watching: routing publishes nothing', async () => {
        await app.waitForState(async () => (await app.ctx.redis.zcard(app.ctx.keys.liveTailViewers)) === 0, 5_000, 'earlier viewers to leave');
    // A pattern subscription sees every publish without counting as a viewer.
    const spy = createTestRedis();
    const messages: string[] = [];
    spy.on('pmessage', (_pattern: string, _channel: string, message: string) => messages.push(message));
    await spy.psubscribe(app.ctx.keys.liveTailChannel('*'));
    try {
      await send([{ key: 'unwatched', split: 'new_checkout', treatment: 'on', time: Date.now() }]);
      await app.waitForRoutings(routings);
      const viewer = tail();
      await viewer.ready();
      await send([{ key: 'watched', split: 'new_checkout', treatment: 'on', time: Date.now() }]);
      await viewer.waitFor(() => impressionsOf(viewer).length >= 1, 'the watched impression');
      await app.waitForState(async () => messages.length >= 1, 5_000, 'the published message');
      // Messages arrive in publishing order: had the first job published, its message would come first.
      assert.equal(messages.length, 1);
      assert.match(messages[0] ?? '', /"key":"watched"/);
      assert.doesNotMatch(messages.join(''), /unwatched/);
      viewer.close();
    } finally {
      spy.disconnect();
    }
  });

  test('a slow viewer is cut off with a final event while delivery and the other viewers go on', async () => {
    const server = buildServer(app.ctx, { logger: false, liveTail: { maxBufferedBytes: 64 * 1024, closeGraceMs: 60_000 } });
    servers.push(server);
    const base = await server.listen({ port: 0, host: '127.0.0.1' });
        const slow = tail('', base);
    const watcher = tail('?key=last-one', base);
    await Promise.all([slow.ready(), watcher.ready()]);
    slow.pause();
    receiver.requests.length = 0;
    // About 10 MB of events: more than the socket buffers between server and viewer hold.
    const properties = JSON.stringify({ note: 'x'.repeat(4_000) });
    const requests = 25;
    for (let r = 0; r < requests; r += 1) {
      await send(Array.from({ length: 100 }, (_, i) => ({ key: r === requests - 1 && i === 99 ? 'last-one' : `bulk-${r}-${i}`, split: 'new_checkout', treatment: 'on', time: Date.now(), properties })));
    }
    // The pipeline was not held back: every impression reached the destination, the other viewer saw the last one.
    await receiver.waitFor(() => receiver.impressions().length >= requests * 100, 60_000, 'every impression delivered');
    await watcher.waitFor(() => impressionsOf(watcher).some((e) => e.impression.key === 'last-one'), 'the last impression');
    // The slow viewer's registration is gone once it has been cut off.
    await app.waitForState(async () => (await app.ctx.redis.zcard(app.ctx.keys.liveTailViewers)) === 1, 20_000, 'the slow viewer to be cut off');
    slow.resume();
    await slow.waitFor(() => slow.ended, 'the slow stream to end');
    const last = slow.events.at(-1);
    assert.equal(last?.event, 'end');
    assert.equal((last?.data as { reason: string }).reason, 'slow_viewer');
    assert.ok(impressionsOf(slow).length < requests * 100, `${impressionsOf(slow).length} events reached the slow viewer`);
    assert.equal(watcher.ended, false);
  });

  test('closing the server ends every stream with a final event', async () => {
    const server = buildServer(app.ctx, { logger: false });
    const base = await server.listen({ port: 0, host: '127.0.0.1' });
    const viewer = tail('', base);
    await viewer.ready();
    await server.close();
    await viewer.waitFor(() => viewer.ended, 'the stream to end');
    assert.deepEqual(viewer.events.at(-1), { event: 'end', data: { reason: 'shutdown', message: 'the server is shutting down; reconnect to continue' } });
  });

  test('an unknown environment is a 404 and a missing token a 401, as JSON', async () => {
    const unknown = new SseClient(`${app.url}/admin/v1/environments/nope/tail`, auth);
    viewers.push(unknown);
    await unknown.waitFor(() => unknown.ended, 'the answer');
    assert.equal(unknown.status, 404);
    assert.equal((JSON.parse(unknown.body) as { error: { code: string } }).error.code, 'FLAGSTREAM_ERR_NOT_FOUND');
    const anonymous = new SseClient(`${app.url}/admin/v1/environments/env-prod/tail`, {});
    viewers.push(anonymous);
    await anonymous.waitFor(() => anonymous.ended, 'the answer');
    assert.equal(anonymous.status, 401);
  });
});

describe('live tail: whether anyone watches is asked at most once per interval', () => {
  const prefix = uniquePrefix('tailcache');
  const redis = createTestRedis();
  after(async () => {
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  test('a viewer who arrives is seen once the cached answer is older than the interval, and its filter with it', async () => {
    let now = Date.now();
    const clock = () => now;
    const keys = deploymentKeys(prefix, redis);
    const publisher = createTailPublisher({ redis, keys, clock, checkIntervalMs: 1000 });
    const subscriptions = createTailSubscriptions({ redis, keys, clock });
    try {
      assert.deepEqual(await publisher.viewers('env-a'), []);
      const watch = await subscriptions.watch('env-a', { flag: 'new_checkout' }, () => undefined);
      now += 999;
      assert.deepEqual(await publisher.viewers('env-a'), [], 'still the cached answer');
      now += 1;
      assert.deepEqual(await publisher.viewers('env-a'), [{ flag: 'new_checkout', treatment: undefined, key: undefined }]);
      assert.deepEqual(await publisher.viewers('env-b'), []);
      await watch.stop();
      now += 1000;
      assert.deepEqual(await publisher.viewers('env-a'), []);
      // A registration that is not renewed lapses (a viewer process that died).
      await subscriptions.watch('env-a', {}, () => undefined);
      now += 31_000;
      assert.deepEqual(await publisher.viewers('env-a'), []);
    } finally {
      await subscriptions.close();
    }
  });
});
