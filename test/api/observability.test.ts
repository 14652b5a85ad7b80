import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createDeliveryFailureLog, type FailedAttempt } from '../../src/observability/delivery-failure-log.js';
import { createLogger } from '../../src/observability/logger.js';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { adminToken, postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

const sdk = { authorization: 'Bearer obs-sdk-key' };

/** A log destination whose lines the test reads back. */
function logCapture(tty = false) {
  const stream = new PassThrough() as PassThrough & { isTTY?: boolean };
  if (tty) stream.isTTY = true;
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return {
    stream,
    text: () => text,
    lines: () =>
      text
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

function metricValue(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('metrics, request ids, readiness and failure logs', () => {
  let app: TestApp;
  let receiver: HttpReceiver;
  let failing: HttpReceiver;
  const logs = logCapture();

  before(async () => {
    receiver = await HttpReceiver.start();
    failing = await HttpReceiver.start();
    failing.respond = () => ({ status: 503, body: 'maintenance' });
    app = await startTestApp({ logStream: logs.stream, workers: false });
    await app.apply({
      environments: [
        {
          id: 'env-obs',
          sdkKeys: ['obs-sdk-key'],
          destinations: [
            { id: 'hook-ok', type: 'webhook', settings: { url: `${receiver.url}/ok` }, filters: { flags: ['good_*'] } },
            { id: 'hook-down', type: 'webhook', settings: { url: `${failing.url}/down` }, filters: { flags: ['bad_*'] }, delivery: { retrySchedule: ['1h'], circuitBreakerThreshold: 100 } },
          ],
        },
      ],
    });
  });
  after(async () => {
    await app.close();
    await receiver.close();
    await failing.close();
  });

  test('/readyz reports Redis and the worker processes, and stays ready without workers', async () => {
    const before = await fetch(`${app.url}/readyz`);
    assert.equal(before.status, 200);
    const idle = (await before.json()) as { status: string; redis: string; workers: { count: number }; warning?: string };
    assert.deepEqual([idle.status, idle.redis, idle.workers.count], ['ready', 'up', 0]);
    assert.match(idle.warning ?? '', /no worker process is running/);
    app.startWorkers();
    let ready: { workers: { count: number; processes: { pid: number }[] }; warning?: string } | undefined;
    await app.waitForState(async () => {
      ready = (await (await fetch(`${app.url}/readyz`)).json()) as typeof ready;
      return (ready?.workers.count ?? 0) === 1;
    }, 10_000, 'the worker to announce itself');
    assert.equal(ready?.workers.processes[0]?.pid, process.pid);
    assert.equal(ready?.warning, undefined);
  });

  test('/metrics has ingest-to-delivery latency per destination, batch sizes and queue depths', async () => {
    const response = await postJson(`${app.url}/v1/impressions`, { impressions: Array.from({ length: 5 }, (_, i) => ({ key: `user-${i}`, split: 'good_flag', treatment: 'on', time: Date.now() })) }, sdk);
    assert.equal(response.status, 202);
    await receiver.waitForRequests(1);
    await app.waitForDeliveries(1, 15_000, 'hook-ok');
    const text = await (await fetch(`${app.url}/metrics`)).text();
    assert.equal(metricValue(text, 'flagstream_delivery_latency_seconds_count', 'destination="hook-ok"'), 5);
    assert.ok((metricValue(text, 'flagstream_delivery_latency_seconds_bucket', 'le="86400",destination="hook-ok"') ?? 0) === 5);
    assert.equal(metricValue(text, 'flagstream_delivery_request_items_sum', 'destination="hook-ok"'), 5);
    assert.equal(metricValue(text, 'flagstream_delivery_request_items_count', 'destination="hook-ok"'), 1);
    assert.equal(metricValue(text, 'flagstream_ingest_request_impressions_sum', 'source="native"'), 5);
    for (const state of ['waiting', 'prioritized', 'active', 'delayed', 'failed']) {
      assert.notEqual(metricValue(text, 'flagstream_queue_jobs', `queue="delivery",state="${state}"`), undefined, state);
    }
  });

  test('a failed attempt is one log line with the destination, the reason and the next try', async () => {
    const response = await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'user-x', split: 'bad_flag', treatment: 'on', time: Date.now() }] }, sdk);
    assert.equal(response.status, 202);
    await app.waitForFailedDeliveries(1, 15_000, 'hook-down');
    const line = logs.lines().find((l) => l.destinationId === 'hook-down' && typeof l.nextTryAt === 'string');
    assert.ok(line, logs.text());
    assert.equal(line.level, 40);
    assert.equal(line.reason, 'HTTP 503: maintenance');
    assert.equal(line.status, 503);
    assert.equal(line.attempt, 1);
    assert.equal(line.pending, 1);
    // The schedule's first step (1 h; the test's random source makes the ±10 % exactly 0).
    assert.equal(Date.parse(line.nextTryAt as string) - (line.time as number) > 3_599_000, true);
    assert.equal(Date.parse(line.nextTryAt as string) - (line.time as number) < 3_601_000, true);
    assert.match(line.msg as string, /^delivery to hook-down failed: HTTP 503: maintenance; next try at \d{4}-/);
    const delayed = await app.ctx.queues.delivery.getDelayed();
    assert.equal(delayed.filter((job) => job.data.destinationId === 'hook-down').length, 1);
  });

  test('API log lines carry the request id; X-Request-Id is honoured and echoed, or made', async () => {
    const given = await fetch(`${app.url}/admin/v1/environments`, { headers: { authorization: `Bearer ${adminToken}`, 'x-request-id': 'trace-42' } });
    assert.equal(given.status, 200);
    assert.equal(given.headers.get('x-request-id'), 'trace-42');
    await app.waitForState(async () => logs.lines().some((l) => l.reqId === 'trace-42'), 5_000, 'the admin request line');
    const line = logs.lines().find((l) => l.reqId === 'trace-42');
    assert.deepEqual([line?.msg, line?.status, line?.path], ['admin request', 200, '/admin/v1/environments']);
    const made = await fetch(`${app.url}/healthz`);
    assert.match(made.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    const unsafe = await fetch(`${app.url}/healthz`, { headers: { 'x-request-id': 'x'.repeat(200) } });
    assert.match(unsafe.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    const failed = await fetch(`${app.url}/v1/impressions`, { method: 'POST', headers: { 'x-request-id': 'req-bad-1', 'content-type': 'application/json', ...sdk }, body: '{}' });
    assert.equal(failed.status, 400);
    assert.equal(failed.headers.get('x-request-id'), 'req-bad-1');
  });
});

describe('/metrics samples queue depths at most every few seconds', () => {
  test('a scrape within 5 s reuses the last sample; a later one reads the queues again', async () => {
    let now = Date.now();
    const app = await startTestApp({ workers: false, clock: () => now });
    try {
      await app.apply({ environments: [{ id: 'env-q', sdkKeys: ['q-sdk-key'] }] });
      const waiting = async () => metricValue(await (await fetch(`${app.url}/metrics`)).text(), 'flagstream_queue_jobs', 'queue="ingest",state="waiting"');
      assert.equal(await waiting(), 0);
      const response = await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'user-q', split: 'f', treatment: 'on', time: now }] }, { authorization: 'Bearer q-sdk-key' });
      assert.equal(response.status, 202);
      now += 4_999;
      assert.equal(await waiting(), 0);
      now += 1;
      assert.equal(await waiting(), 1);
    } finally {
      await app.close();
    }
  });
});

describe('failed-attempt log lines are rate-limited per destination', () => {
  const attempt = (destinationId: string, at: number, reason = 'HTTP 503: maintenance'): FailedAttempt => ({ destinationId, reason, status: 503, attempt: 1, pending: 10, nextTryAt: at + 5_000, throttled: false });

  test('first failure at once, then one summary per window with the count, and a line when it recovers', () => {
    let now = 1_800_000_000_000;
    const scheduled: { run: () => void; ms: number; cancelled: boolean }[] = [];
    const logs = logCapture();
    const log = createDeliveryFailureLog({
      logger: createLogger('info', logs.stream, 'json'),
      clock: () => now,
      windowMs: 60_000,
      schedule: (run, ms) => {
        const entry = { run, ms, cancelled: false };
        scheduled.push(entry);
        return { cancel: () => (entry.cancelled = true) };
      },
    });
    log.failed(attempt('hook-a', now));
    assert.equal(logs.lines().length, 1);
    assert.equal(logs.lines()[0]?.nextTryAt, new Date(now + 5_000).toISOString());
    for (let i = 0; i < 4; i += 1) {
      now += 1_000;
      log.failed(attempt('hook-a', now, i === 3 ? 'HTTP 502: bad gateway' : undefined));
    }
    assert.equal(logs.lines().length, 1, 'held back within the window');
    assert.equal(scheduled.length, 1);
    assert.equal(scheduled[0]?.ms, 59_000, 'the window of the line written first');
    // Another destination has its own budget.
    log.failed(attempt('hook-b', now));
    assert.equal(logs.lines().length, 2);
    now += 56_000;
    scheduled[0]?.run();
    const summary = logs.lines()[2];
    assert.deepEqual([summary?.destinationId, summary?.failedAttempts, summary?.reason], ['hook-a', 4, 'HTTP 502: bad gateway']);
    assert.match(summary?.msg as string, /^4 more failed delivery attempt\(s\) to hook-a in the last 60 s; last: HTTP 502: bad gateway; next try at /);
    // Failures held back when the next line is due are counted on that line.
    now += 1_000;
    log.failed(attempt('hook-a', now));
    now += 60_000;
    log.failed(attempt('hook-a', now));
    assert.equal(scheduled[1]?.cancelled, true);
    const next = logs.lines()[3];
    assert.equal(next?.heldBack, 1);
    assert.match(next?.msg as string, /and 1 more failed attempt\(s\) since the last line/);
    log.succeeded('hook-a');
    const recovered = logs.lines()[4];
    assert.deepEqual([recovered?.level, recovered?.msg], [30, 'deliveries to hook-a succeed again after 7 failed attempt(s)']);
    log.succeeded('hook-a');
    assert.equal(logs.lines().length, 5, 'a success without failures before it says nothing');
    log.close();
  });

  test('on a terminal the log is readable text, elsewhere JSON lines; secrets are redacted in both', () => {
    const terminal = logCapture(true);
    createLogger('info', terminal.stream).warn({ destinationId: 'hook-a', settings: { apiKey: 'SENTINEL-KEY' } }, 'delivery to hook-a failed');
    assert.equal(terminal.lines().length, 0);
    // Without the terminal's colour codes.
    const plain = terminal.text().replace(/\x1b\[[0-9;]*m/g, '');
    assert.match(plain, /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: delivery to hook-a failed {/);
    assert.match(plain, /"destinationId":"hook-a"/);
    assert.doesNotMatch(terminal.text(), /SENTINEL-KEY/);
    const piped = logCapture();
    createLogger('info', piped.stream).warn({ settings: { apiKey: 'SENTINEL-KEY' } }, 'delivery failed');
    assert.equal(piped.lines()[0]?.msg, 'delivery failed');
    assert.doesNotMatch(piped.text(), /SENTINEL-KEY/);
    const forced = logCapture(true);
    createLogger('info', forced.stream, 'json').info('as JSON');
    assert.equal(forced.lines()[0]?.msg, 'as JSON');
  });
});
