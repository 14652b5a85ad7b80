import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

/**
 * A worker process killed (SIGKILL) in the middle of a delivery loses nothing: once its lock
 * lapses, another worker takes the job over and delivers the impressions.
 */
describe('a worker crash mid-delivery', () => {
  let app: TestApp;
  let receiver: HttpReceiver;
  let worker: ChildProcess | undefined;

  before(async () => {
    receiver = await HttpReceiver.start();
    // No in-process workers yet: the child process is the only worker.
    app = await startTestApp({ workers: false, env: { FLAGSTREAM_JOB_LOCK_MS: '1000' } });
    await app.apply({ environments: [{ id: 'env-c', sdkKeys: ['sdk-c'], destinations: [{ id: 'hook-c', type: 'webhook', settings: { url: `${receiver.url}/c`, maxBatchWait: 0 } }] }] });
  });
  after(async () => {
    worker?.kill('SIGKILL');
    await app.close();
    await receiver.close();
  });

  test('another worker takes the job over and delivers it', async () => {
    // The first request hangs: the child is mid-delivery when it dies.
    receiver.respond = (_request, index) => (index === 0 ? { status: 200, hang: true } : { status: 200 });
    const entry = fileURLToPath(new URL('../helpers/run-cli.ts', import.meta.url));
    worker = spawn(process.execPath, ['--import', 'tsx', entry, 'serve', '--role', 'worker'], {
      env: {
        ...process.env,
        REDIS_URL: app.ctx.env.REDIS_URL,
        FLAGSTREAM_REDIS_PREFIX: app.ctx.env.FLAGSTREAM_REDIS_PREFIX,
        FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1',
        FLAGSTREAM_JOB_LOCK_MS: '1000',
        FLAGSTREAM_BATCH_WAIT_CAP_MS: '50',
        FLAGSTREAM_LOG_LEVEL: 'silent',
      },
      stdio: 'ignore',
    });
    const response = await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'user-crash', split: 'f', treatment: 'on', time: 1718900000000 }] }, { authorization: 'Bearer sdk-c' });
    const [id] = (response.body as { ids: string[] }).ids;
    await receiver.waitForRequests(1, 20_000);
    const exited = new Promise((resolve) => worker?.once('exit', resolve));
    worker.kill('SIGKILL');
    await exited;

    app.startWorkers();
    await receiver.waitForRequests(2, 20_000);
    assert.deepEqual(JSON.parse(receiver.requests[1]?.body ?? '[]').map((i: { id: string }) => i.id), [id]);
    assert.equal(receiver.requests[1]?.headers['webhook-id'], receiver.requests[0]?.headers['webhook-id'], 'same batch, same webhook-id: the receiver can drop a duplicate');
    await app.waitForDeliveries(1, 10_000, 'hook-c');
    assert.deepEqual(await app.ctx.deadLetters.list({}), []);
  });
});
