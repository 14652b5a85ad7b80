import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { z } from 'zod';
import type { ItemOutcome } from '../../src/connectors/connector.js';
import { defineHttpConnector } from '../../src/connectors/define-http-connector.js';
import { builtInConnectors, ConnectorRegistry } from '../../src/connectors/registry.js';
import type { DestinationInput } from '../../src/domain/configuration.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

/**
 * A connector whose receiver reports per-item results, the way Amplitude or Mixpanel do:
 * `{ "rejected": [id…], "retry": [id…] }` in a 200 answer.
 */
const perItemConnector = defineHttpConnector<{ url: string }>({
  type: 'per-item-test',
  displayName: 'Per-item test',
  description: 'test double for vendors that answer per item',
  settingsSchema: z.object({ url: z.string() }),
  secretSettings: [],
  exampleSettings: { url: 'http://127.0.0.1/' },
  limits: () => ({ maxItemsPerRequest: 100, maxBytesPerRequest: 1_000_000, maxBatchWaitMs: 0, maxConcurrentRequests: 2 }),
  encode: (items, settings) => {
    const body = JSON.stringify(items);
    return { requests: [{ itemIds: items.map((i) => i.id), bytes: body.length, request: { method: 'POST', url: settings.url, headers: { 'content-type': 'application/json' }, body } }], rejected: [], skipped: [] };
  },
  classify: (result) => {
    if (!result.ok || result.response.status !== 200 || !result.response.body.startsWith('{')) return undefined;
    const answer = JSON.parse(result.response.body) as { rejected?: string[]; retry?: string[] };
    const byItem = new Map<string, ItemOutcome>();
    for (const id of answer.rejected ?? []) byItem.set(id, { kind: 'rejected', code: 'invalid_payload', reason: `item ${id} is invalid` });
    for (const id of answer.retry ?? []) byItem.set(id, { kind: 'retry', reason: `item ${id} was not stored` });
    return { kind: 'partial', byItem, reason: 'some items failed' };
  },
});

/** A connector with a bug: building its client throws (see crashingConnector). */
const brokenConnector = defineHttpConnector<{ url: string }>({
  type: 'broken-test',
  displayName: 'Broken test',
  description: 'test double whose client setup throws',
  settingsSchema: z.object({ url: z.string() }),
  secretSettings: [],
  exampleSettings: { url: 'http://127.0.0.1/' },
  limits: () => ({ maxItemsPerRequest: 100, maxBytesPerRequest: 1_000_000, maxBatchWaitMs: 0, maxConcurrentRequests: 2 }),
  encode: () => ({ requests: [], rejected: [], skipped: [] }),
});
const crashingConnector = { ...brokenConnector, createClient: (): never => { throw new Error('client setup exploded'); } };

const fast = { retrySchedule: ['300ms', '300ms', '300ms'], circuitBreakerThreshold: 100 };
const sdk = { authorization: 'Bearer sdk-key' };
let sequence = 0;
const impression = (split = 'flag_a') => ({ key: `user-${(sequence += 1)}`, split, treatment: 'on', time: 1_718_900_000_000 + sequence });

describe('failed deliveries: classification, retries, dead letters, replay, isolation, health', () => {
  let app: TestApp;
  let receivers: HttpReceiver[] = [];
  /** A fresh receiver per use, so late requests of one test never land in another's. */
  const startReceiver = async () => {
    const receiver = await HttpReceiver.start();
    receivers.push(receiver);
    return receiver;
  };

  const configure = async (destinations: DestinationInput[]) => {
    await app.apply({ environments: [{ id: 'env-f', sdkKeys: ['sdk-key'], destinations }] });
  };
  const send = async (count = 1, split = 'flag_a') => {
    const response = await postJson(`${app.url}/v1/impressions`, { impressions: Array.from({ length: count }, () => impression(split)) }, sdk);
    assert.equal(response.status, 202);
    return (response.body as { ids: string[] }).ids;
  };
  const hook = (id: string, receiver: HttpReceiver, extra: Partial<DestinationInput> = {}): DestinationInput => ({
    id,
    type: 'webhook',
    settings: { url: `${receiver.url}/${id}`, maxBatchWait: 0 },
    filters: { flags: [id === 'slow' || id === 'healthy' ? '*' : `${id}*`] },
    delivery: fast,
    ...extra,
  });

  before(async () => {
    app = await startTestApp({ registry: new ConnectorRegistry([...builtInConnectors, perItemConnector, crashingConnector]), env: { FLAGSTREAM_DELIVERY_CONCURRENCY: '8' } });
  });
  after(() => app.close());
  afterEach(async () => {
    for (const receiver of receivers) await receiver.close();
    receivers = [];
  });

  test('503 then 200: retried after the backoff and delivered once', async () => {
    const receiver = await startReceiver();
    await configure([hook('retry503', receiver)]);
    receiver.respond = (_request, index) => (index === 0 ? { status: 503, body: 'maintenance' } : { status: 200 });
    const [id] = await send(1, 'retry503');
    await app.waitForDeliveries(1, undefined, 'retry503');
    assert.equal(receiver.requests.length, 2);
    const [first, second] = receiver.requests;
    assert.equal(first?.headers['webhook-id'], second?.headers['webhook-id'], 'a retry carries the same webhook-id');
    assert.deepEqual(JSON.parse(second?.body ?? '[]').map((i: { id: string }) => i.id), [id]);
    assert.ok((second?.at ?? 0) - (first?.at ?? 0) >= 250, 'waited for the backoff');
    assert.deepEqual(await app.ctx.deadLetters.list({ destinationId: 'retry503' }), []);
  });

  test('429 with Retry-After: 2 waits about 2 s, without consuming an attempt', async () => {
    const receiver = await startReceiver();
    await configure([hook('throttled', receiver, { delivery: { ...fast, retrySchedule: ['100ms'] } })]);
    receiver.respond = (_request, index) => (index === 0 ? { status: 429, headers: { 'retry-after': '2' }, body: 'slow down' } : { status: 200 });
    await send(1, 'throttled');
    await app.waitForDeliveries(1, 10_000, 'throttled');
    const [first, second] = receiver.requests;
    const waited = (second?.at ?? 0) - (first?.at ?? 0);
    assert.ok(waited >= 1900 && waited < 4000, `waited ${waited} ms`);
    // BullMQ counts the finishing attempt too: 1 means the throttled wait consumed none.
    assert.equal(app.completedDeliveries.at(-1)?.job.attemptsMade, 1, 'throttling consumed no attempt');
  });

  test('400: dead-lettered at once with the reason, never retried', async () => {
    const receiver = await startReceiver();
    await configure([hook('rejects', receiver)]);
    receiver.respond = () => ({ status: 400, body: '{"error":"field treatment is not allowed"}' });
    const ids = await send(2, 'rejects');
    await app.waitForDeliveries(1, undefined, 'rejects');
    assert.equal(receiver.requests.length, 1);
    const [letter] = await app.ctx.deadLetters.list({ destinationId: 'rejects' });
    assert.ok(letter);
    assert.equal(letter.reason, 'invalid_payload');
    assert.equal(letter.error.status, 400);
    assert.match(letter.error.message, /HTTP 400: \{"error":"field treatment is not allowed"\}/);
    assert.deepEqual(letter.impressions.map((i) => i.id).sort(), [...ids].sort());
    assert.equal(letter.attempts, 1);
  });

  test('a partial failure dead-letters only the failed items and retries only the retryable ones', async () => {
    const receiver = await startReceiver();
    await configure([{ id: 'peritem', type: 'per-item-test', settings: { url: `${receiver.url}/items` }, delivery: fast }]);
    let ids: string[] = [];
    receiver.respond = (_request, index) =>
      index === 0 ? { status: 200, body: JSON.stringify({ rejected: [ids[0]], retry: [ids[1]] }) } : { status: 200, body: 'ok' };
    ids = await send(4);
    await app.waitForDeliveries(1, undefined, 'peritem');
    assert.equal(receiver.requests.length, 2);
    assert.deepEqual(JSON.parse(receiver.requests[1]?.body ?? '[]').map((i: { id: string }) => i.id), [ids[1]], 'only the retryable item is sent again');
    const letters = await app.ctx.deadLetters.list({ destinationId: 'peritem' });
    assert.equal(letters.length, 1);
    assert.deepEqual(letters[0]?.impressions.map((i) => i.id), [ids[0]]);
  });

  test('a dead-lettered batch replayed after the receiver is fixed is delivered; a second replay does nothing', async () => {
    const receiver = await startReceiver();
    await configure([hook('replayed', receiver)]);
    receiver.respond = () => ({ status: 401, body: 'bad token' });
    const ids = await send(3, 'replayed');
    await app.waitForDeliveries(1, undefined, 'replayed');
    const listed = await app.admin('GET', '/dead-letters?destination=replayed');
    const [letter] = (listed.body as { deadLetters: { id: string; reason: string; impressionCount: number }[] }).deadLetters;
    assert.equal(letter?.reason, 'destination_auth');
    assert.equal(letter?.impressionCount, 3);
    const failedWebhookId = receiver.requests[0]?.headers['webhook-id'];

    receiver.respond = () => ({ status: 200 });
    const dry = await app.admin('POST', '/dead-letters/replay', { destination: 'replayed', dryRun: true });
    assert.deepEqual(dry.body, { dryRun: true, deadLetters: 1, impressions: 3, skipped: [] });
    const replay = await app.admin('POST', '/dead-letters/replay', { ids: [letter?.id] });
    assert.deepEqual(replay.body, { dryRun: false, deadLetters: 1, impressions: 3, skipped: [] });
    await app.waitForDeliveries(2, undefined, 'replayed');
    const delivered = receiver.requests[1];
    assert.deepEqual(JSON.parse(delivered?.body ?? '[]').map((i: { id: string }) => i.id).sort(), [...ids].sort());
    assert.equal(delivered?.headers['webhook-id'], failedWebhookId, 'the replay carries the same webhook-id');

    const again = await app.admin('POST', '/dead-letters/replay', { ids: [letter?.id] });
    assert.deepEqual(again.body, { dryRun: false, deadLetters: 0, impressions: 0, skipped: [{ id: letter?.id, reason: 'already replayed' }] });
    const all = await app.admin('POST', '/dead-letters/replay', { destination: 'replayed' });
    assert.equal((all.body as { deadLetters: number }).deadLetters, 0);
    assert.equal(((await app.admin('GET', `/dead-letters/${letter?.id}`)).body as { status: string }).status, 'replayed');
    assert.equal(receiver.requests.length, 2);
  });

  test('a connector that throws is retried, then dead-lettered as internal_error, never left in the failed set', async () => {
    await configure([{ id: 'crashing', type: 'broken-test', settings: { url: 'http://127.0.0.1/' }, delivery: { retrySchedule: ['100ms'], circuitBreakerThreshold: 100 } }]);
    const ids = await send(2);
    await app.waitForDeliveries(1, 5000, 'crashing');
    assert.equal(app.failedDeliveries.filter((f) => f.job.name === 'crashing').length, 1, 'one retry first');
    const [letter] = await app.ctx.deadLetters.list({ destinationId: 'crashing' });
    assert.equal(letter?.reason, 'internal_error');
    assert.equal(letter?.error.message, 'client setup exploded');
    assert.deepEqual(letter?.impressions.map((i) => i.id).sort(), [...ids].sort());
    assert.equal(await app.ctx.queues.delivery.getFailedCount(), 0);
  });

  test('a hanging receiver does not delay a healthy one', async () => {
    const slow = await startReceiver();
    const healthy = await startReceiver();
    slow.respond = () => ({ status: 200, hang: true });
    await configure([
      hook('slow', slow, { settings: { url: `${slow.url}/slow`, batchSize: 1, maxBatchWait: 0, timeout: 3000 }, delivery: { ...fast, maxConcurrentRequests: 1 } }),
      hook('healthy', healthy),
    ]);
    // Ten one-impression batches for the slow destination, more than the worker's 8 slots…
    await send(10, 'x');
    await slow.waitForRequests(1);
    // …yet the healthy destination gets its impressions while the slow one still hangs.
    await healthy.waitFor(() => healthy.impressions().length >= 10, 5000, 'the healthy destination to get all 10');
    assert.equal(slow.requests.length, 1, 'the slow destination holds one request in flight, as configured');
  });

  test('a destination that keeps failing is paused (circuit open), probed, and resumes by itself when healthy', async () => {
    const receiver = await startReceiver();
    await configure([hook('flaky', receiver, { delivery: { retrySchedule: ['100ms', '100ms', '100ms', '100ms', '100ms'], circuitBreakerThreshold: 2, circuitBreakerCooldown: '1500ms' } })]);
    receiver.respond = () => ({ status: 500, body: 'down' });
    await send(1, 'flaky');
    await app.waitForFailedDeliveries(2, undefined, 'flaky');
    const open = await app.admin('GET', '/destinations/flaky/health');
    assert.equal((open.body as { state: string }).state, 'open');
    assert.match((open.body as { reason: string }).reason, /circuit opened after 2 consecutive failed attempts/);
    assert.match((open.body as { lastError: string }).lastError, /HTTP 500: down/);

    receiver.respond = () => ({ status: 200 });
    await app.waitForDeliveries(1, 10_000, 'flaky');
    const [, second, probe] = receiver.requests;
    assert.ok((probe?.at ?? 0) - (second?.at ?? 0) >= 1300, 'the probe waited for the cooldown');
    assert.equal(((await app.admin('GET', '/destinations/flaky/health')).body as { state: string }).state, 'healthy');
  });

  test('requestsPerSecond paces a destination across its batches', async () => {
    const receiver = await startReceiver();
    await configure([hook('paced', receiver, { settings: { url: `${receiver.url}/paced`, batchSize: 1, maxBatchWait: 0 }, delivery: { ...fast, requestsPerSecond: 2 } })]);
    await send(6, 'paced');
    await receiver.waitForRequests(6, 10_000);
    const times = receiver.requests.map((r) => r.at);
    const spread = Math.max(...times) - Math.min(...times);
    // Six requests at two per second need three one-second windows: the last starts over a second after the first.
    assert.ok(spread >= 1000, `six requests within ${spread} ms`);
  });

  test('an operator pause holds the work; resume releases it at once', async () => {
    const receiver = await startReceiver();
    await configure([hook('held', receiver)]);
    const paused = await app.admin('POST', '/destinations/held/pause', { reason: 'vendor maintenance' });
    assert.equal((paused.body as { state: string }).state, 'paused');
    assert.match((paused.body as { reason: string }).reason, /vendor maintenance/);
    await send(2, 'held');
    await app.waitForState(async () => (await app.ctx.queues.delivery.getDelayed()).some((job) => job.name === 'held'), 5000, 'the batch to wait in the delayed set');
    assert.equal(receiver.requests.length, 0);
    const resumed = await app.admin('POST', '/destinations/held/resume');
    assert.equal((resumed.body as { state: string }).state, 'healthy');
    await app.waitForDeliveries(1, 3000, 'held');
    assert.equal(receiver.impressions().length, 2);
  });

  test('work queued for a disabled destination waits; enabling it releases the work', async () => {
    const receiver = await startReceiver();
    await configure([hook('toggled', receiver)]);
    // Routing only fans out to enabled destinations: queue the work first, then disable.
    await app.workers?.delivery.pause();
    await send(2, 'toggled');
    await app.waitForState(async () => (await app.ctx.queues.delivery.getWaiting()).some((job) => job.name === 'toggled'), 5000, 'the batch to be queued');
    assert.equal((await app.admin('POST', '/destinations/toggled/disable')).status, 200);
    await app.waitForState(async () => app.ctx.config.current().destinations.get('toggled')?.destination.enabled === false, 5000, 'the change to reach the workers');
    app.workers?.delivery.resume();
    await app.waitForState(async () => (await app.ctx.queues.delivery.getDelayed()).some((job) => job.name === 'toggled'), 5000, 'the batch to wait');
    assert.equal(receiver.requests.length, 0);
    assert.equal((await app.admin('POST', '/destinations/toggled/enable')).status, 200);
    await app.waitForDeliveries(1, 5000, 'toggled');
    assert.equal(receiver.impressions().length, 2);
  });

  test('a worker restarted mid-backoff keeps the schedule', async () => {
    const receiver = await startReceiver();
    await configure([hook('restart', receiver, { delivery: { retrySchedule: ['2s'], circuitBreakerThreshold: 100 } })]);
    receiver.respond = (_request, index) => (index === 0 ? { status: 502 } : { status: 200 });
    await send(1, 'restart');
    await app.waitForFailedDeliveries(1, undefined, 'restart');
    await app.workers?.close();
    const delayed = (await app.ctx.queues.delivery.getDelayed()).filter((job) => job.name === 'restart');
    assert.equal(delayed.length, 1, 'the retry waits in Redis, not in the stopped process');
    app.startWorkers();
    await receiver.waitForRequests(2, 10_000);
    const waited = (receiver.requests[1]?.at ?? 0) - (receiver.requests[0]?.at ?? 0);
    assert.ok(waited >= 1800, `the retry came ${waited} ms after the failure`);
    await app.waitForDeliveries(1, 5000, 'restart');
  });
});
