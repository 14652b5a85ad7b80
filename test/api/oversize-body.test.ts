import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

const limit = 1024 * 1024;
const run = promisify(execFile);
const curlAvailable = await run('curl', ['--version']).then(
  () => true,
  () => false,
);

describe('an oversize upload is answered 413, and the client reads it instead of a broken pipe', () => {
  let app: TestApp;
  let dir: string;
  const headers = { 'content-type': 'application/json', authorization: 'Bearer key-o' };

  before(async () => {
    app = await startTestApp({ workers: false, env: { FLAGSTREAM_MAX_BODY_BYTES: String(limit) } });
    await app.apply({ environments: [{ id: 'env-o', sdkKeys: ['key-o'], webhookToken: 'token-o' }] });
    dir = mkdtempSync(join(tmpdir(), 'flagstream-oversize-'));
  });
  after(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const assert413 = async (response: Response) => {
    assert.equal(response.status, 413);
    const body = (await response.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'FLAGSTREAM_ERR_PAYLOAD_TOO_LARGE');
    assert.match(body.error.message, new RegExp(`over the limit of ${limit} bytes`));
  };

  test('fetch with a Content-Length 8 times the limit, several times in a row', async () => {
    const body = Buffer.alloc(8 * limit, 0x20);
    for (let i = 0; i < 3; i += 1) await assert413(await fetch(`${app.url}/v1/impressions`, { method: 'POST', headers, body }));
    assert.equal(await app.ctx.queues.ingest.getWaitingCount(), 0);
  });

  test('fetch streaming a chunked body (no Content-Length) past the limit', async () => {
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 8 * limit) return controller.close();
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    // `duplex` is required by undici for a stream body and missing from the DOM RequestInit type.
    const init = { method: 'POST', headers, body: stream, duplex: 'half' } as RequestInit;
    await assert413(await fetch(`${app.url}/v1/impressions`, init));
  });

  test('curl --data-binary @file, with and without Expect: 100-continue', { skip: !curlAvailable && 'curl is not installed' }, async () => {
    const file = join(dir, 'big.json');
    writeFileSync(file, Buffer.alloc(8 * limit, 0x20));
    for (const expect of [[], ['-H', 'Expect:']]) {
      const args = ['-sS', '-o', '-', '-w', '\n%{http_code}', '-H', 'content-type: application/json', '-H', 'authorization: Bearer key-o', ...expect, '--data-binary', `@${file}`, `${app.url}/v1/impressions`];
      const { stdout } = await run('curl', args, { maxBuffer: 1024 * 1024 });
      const [body = '', status] = stdout.split('\n');
      assert.equal(status, '413', `curl ${expect.join(' ')}: ${stdout}`);
      assert.equal((JSON.parse(body) as { error: { code: string } }).error.code, 'FLAGSTREAM_ERR_PAYLOAD_TOO_LARGE');
    }
  });

  test('a gzip bomb (small on the wire, 64 times the limit inflated) is a 413; decompression stops at the limit', async () => {
    const bomb = gzipSync(Buffer.alloc(64 * limit, 0x20));
    assert.ok(bomb.length < limit);
    await assert413(await fetch(`${app.url}/webhooks/split/impressions?token=token-o`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: bomb }));
    // Without Content-Encoding: recognised by its magic bytes, bounded the same way.
    await assert413(await fetch(`${app.url}/webhooks/split/impressions?token=token-o`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bomb }));
    assert.equal(await app.ctx.queues.ingest.getWaitingCount(), 0);
  });
});
