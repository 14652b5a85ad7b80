import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { waitForQuietLedger } from '../helpers/ledger.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

const entry = fileURLToPath(new URL('../helpers/run-cli.ts', import.meta.url));

/**
 * A worker process killed (SIGKILL) in the middle of a delivery loses nothing: once its lock
 * lapses, another worker takes the job over and delivers the impressions, however many times
 * that happens; a job that keeps killing its workers ends as a dead letter, never in BullMQ's
 * failed set.
 */
describe('worker crashes mid-delivery', () => {
  let app: TestApp;
  let receiver: HttpReceiver;
  const children = new Set<ChildProcess>();

  const setUp = async (env: Record<string, string> = {}) => {
    receiver = await HttpReceiver.start();
    // No in-process workers yet: the child processes are the only workers.
    app = await startTestApp({ workers: false, env: { FLAGSTREAM_JOB_LOCK_MS: '1000', ...env } });
    await app.apply({ environments: [{ id: 'env-c', sdkKeys: ['sdk-c'], destinations: [{ id: 'hook-c', type: 'webhook', settings: { url: `${receiver.url}/c`, maxBatchWait: 0 } }] }] });
  };

  /** Starts a worker process, waits until it is mid-delivery (request `index` arrived), and kills it. */
  const crashWorkerMidDelivery = async (index: number, env: Record<string, string> = {}) => {
    const worker = spawn(process.execPath, ['--import', 'tsx', entry, 'serve', '--role', 'worker'], {
      env: {
        ...process.env,
        REDIS_URL: app.ctx.env.REDIS_URL,
        FLAGSTREAM_REDIS_PREFIX: app.ctx.env.FLAGSTREAM_REDIS_PREFIX,
        FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1',
        FLAGSTREAM_JOB_LOCK_MS: '1000',
        FLAGSTREAM_BATCH_WAIT_CAP_MS: '50',
        FLAGSTREAM_LOG_LEVEL: 'silent',
        ...env,
      },
      stdio: 'ignore',
    });
    children.add(worker);
    await receiver.waitForRequests(index + 1, 30_000);
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.kill('SIGKILL');
    await exited;
    children.delete(worker);
  };

  const failedJobs = async () => (await app.ctx.queues.delivery.getFailedCount()) + (await app.ctx.queues.ingest.getFailedCount());

  const send = async () => {
    const response = await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'user-crash', split: 'f', treatment: 'on', time: 1718900000000 }] }, { authorization: 'Bearer sdk-c' });
    return (response.body as { ids: string[] }).ids[0];
  };

  beforeEach(() => children.clear());
  afterEach(async () => {
    for (const child of children) child.kill('SIGKILL');
    await app.close();
    await receiver.close();
  });

  test('another worker takes the job over and delivers it', async () => {
    await setUp();
    // The first request hangs: the child is mid-delivery when it dies.
    receiver.respond = (_request, index) => (index === 0 ? { status: 200, hang: true } : { status: 200 });
    const id = await send();
    await crashWorkerMidDelivery(0);

    app.startWorkers();
    await receiver.waitForRequests(2, 20_000);
    assert.deepEqual(JSON.parse(receiver.requests[1]?.body ?? '[]').map((i: { id: string }) => i.id), [id]);
    assert.equal(receiver.requests[1]?.headers['webhook-id'], receiver.requests[0]?.headers['webhook-id'], 'same batch, same webhook-id: the receiver can drop a duplicate');
    await app.waitForDeliveries(1, 10_000, 'hook-c');
    assert.deepEqual(await app.ctx.deadLetters.list({}), []);
  });

  test('a job whose worker is killed twice while it is in flight is still delivered, not left failed', async () => {
    await setUp();
    receiver.respond = (_request, index) => (index < 2 ? { status: 200, hang: true } : { status: 200 });
    const id = await send();
    await crashWorkerMidDelivery(0);
    await crashWorkerMidDelivery(1);

    app.startWorkers();
    await receiver.waitForRequests(3, 20_000);
    assert.deepEqual(JSON.parse(receiver.requests[2]?.body ?? '[]').map((i: { id: string }) => i.id), [id]);
    const ledger = await waitForQuietLedger(app);
    assert.equal(await failedJobs(), 0, 'nothing in a failed set');
    assert.deepEqual(await app.ctx.deadLetters.list({}), []);
    assert.deepEqual(ledger.environments[0]?.destinations.map((d) => [d.routed, d.delivered, d.deadLettered]), [[1, 1, 0]]);
  });

  test('a job that kills its worker more often than FLAGSTREAM_MAX_JOB_CRASHES allows is dead-lettered as worker_crashed', async () => {
    await setUp({ FLAGSTREAM_MAX_JOB_CRASHES: '1' });
    receiver.respond = () => ({ status: 200, hang: true });
    const id = await send();
    await crashWorkerMidDelivery(0, { FLAGSTREAM_MAX_JOB_CRASHES: '1' });
    await crashWorkerMidDelivery(1, { FLAGSTREAM_MAX_JOB_CRASHES: '1' });

    app.startWorkers();
    const ledger = await waitForQuietLedger(app);
    const [letter] = await app.ctx.deadLetters.list({});
    assert.equal(letter?.reason, 'worker_crashed');
    assert.deepEqual(letter?.impressions.map((i) => i.id), [id]);
    assert.equal(receiver.requests.length, 2, 'not sent a third time');
    assert.equal(await failedJobs(), 0, 'nothing in a failed set');
    assert.deepEqual(ledger.environments[0]?.destinations.map((d) => [d.routed, d.delivered, d.deadLettered]), [[1, 0, 1]]);
  });
});
