import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

let now = 1_800_000_000_000;

describe('bad input gets its status and a clear JSON error; nothing is partially enqueued', () => {
  let app: TestApp;

  before(async () => {
    // No workers: whatever is accepted stays in the ingest queue where the test can count it.
    app = await startTestApp({ workers: false, clock: () => now, env: { FLAGSTREAM_MAX_BODY_BYTES: '4096', FLAGSTREAM_INGEST_BACKLOG_LIMIT: '3' } });
    await app.apply({ environments: [{ id: 'env-a', sdkKeys: ['key-a'], webhookToken: 'token-a' }] });
  });
  after(() => app.close());

  const waiting = () => app.ctx.queues.ingest.getWaitingCount();

  test('401 for a missing or unknown SDK key, before the body is even read', async () => {
    const missing = await postJson(`${app.url}/api/testImpressions/bulk`, []);
    assert.equal(missing.status, 401);
    assert.match((missing.body as ErrorBody).error.message, /Bearer <SDK key>/);
    const unknown = await postJson(`${app.url}/v1/impressions`, '{not json', { authorization: 'Bearer nope' });
    assert.equal(unknown.status, 401);
    assert.deepEqual(unknown.body, { error: { code: 'FLAGSTREAM_ERR_UNAUTHORIZED', message: 'unknown SDK key', field: 'authorization' } });
  });

  test('401 for a missing or unknown webhook token', async () => {
    assert.equal((await postJson(`${app.url}/webhooks/split/impressions`, [])).status, 401);
    const wrong = await postJson(`${app.url}/webhooks/split/impressions?token=wrong`, []);
    assert.equal(wrong.status, 401);
    assert.equal((wrong.body as ErrorBody).error.field, 'token');
  });

  test('400 names the offending field of a Split SDK bulk, and nothing of the request is enqueued', async () => {
    const response = await postJson(
      `${app.url}/api/testImpressions/bulk`,
      [{ f: 'flag_a', i: [{ k: 'user-1', t: 'on', m: 1718900000000 }, { k: 'user-2', m: 1718900000000 }] }],
      { authorization: 'Bearer key-a' },
    );
    assert.equal(response.status, 400);
    const body = response.body as ErrorBody;
    assert.equal(body.error.code, 'FLAGSTREAM_ERR_VALIDATION');
    assert.equal(body.error.field, '[0].i[1].t');
    assert.match(body.error.message, /\[0\]\.i\[1\]\.t/);
    assert.equal(await waiting(), 0);
  });

  test('400 names the offending field of a native request', async () => {
    const response = await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'k', split: 's', treatment: 't', time: 'yesterday' }] }, { authorization: 'Bearer key-a' });
    assert.equal(response.status, 400);
    assert.equal((response.body as ErrorBody).error.field, 'impressions[0].time');
  });

  test('400 for a body that is not JSON', async () => {
    const response = await postJson(`${app.url}/v1/impressions`, '{"impressions": [', { authorization: 'Bearer key-a' });
    assert.equal(response.status, 400);
    assert.match((response.body as ErrorBody).error.message, /not valid JSON/);
  });

  test('413 over the size limit, compressed or not', async () => {
    const big = JSON.stringify({ impressions: [{ key: 'k'.repeat(5000), split: 's', treatment: 't', time: 1_799_999_000_000 }] });
    const plain = await postJson(`${app.url}/v1/impressions`, big, { authorization: 'Bearer key-a' });
    assert.equal(plain.status, 413);
    assert.equal((plain.body as ErrorBody).error.code, 'FLAGSTREAM_ERR_PAYLOAD_TOO_LARGE');
    // Small on the wire, too big once decompressed.
    const bomb = gzipSync(JSON.stringify([{ key: 'k'.repeat(100_000), split: 's', treatment: 't', time: 1_799_999_000_000 }]));
    assert.ok(bomb.length < 4096);
    const response = await fetch(`${app.url}/webhooks/split/impressions?token=token-a`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bomb });
    assert.equal(response.status, 413);
    assert.equal(await waiting(), 0);
  });

  test('415 for a content type other than JSON', async () => {
    const response = await fetch(`${app.url}/v1/impressions`, { method: 'POST', headers: { 'content-type': 'text/plain', authorization: 'Bearer key-a' }, body: 'hello' });
    assert.equal(response.status, 415);
    assert.equal(((await response.json()) as ErrorBody).error.code, 'FLAGSTREAM_ERR_UNSUPPORTED_MEDIA_TYPE');
  });

  test('503 with Retry-After once the ingest backlog is over its limit; what was accepted stays queued', async () => {
    const one = { impressions: [{ key: 'k', split: 's', treatment: 't', time: 1_799_999_000_000 }] };
    for (let i = 0; i < 3; i += 1) assert.equal((await postJson(`${app.url}/v1/impressions`, one, { authorization: 'Bearer key-a' })).status, 202);
    // The backlog is sampled at most every 500 ms: move the injected clock past that window.
    now += 1000;
    const response = await postJson(`${app.url}/v1/impressions`, one, { authorization: 'Bearer key-a' });
    assert.equal(response.status, 503);
    assert.equal(response.headers.get('retry-after'), '5');
    assert.equal((response.body as ErrorBody).error.code, 'FLAGSTREAM_ERR_BACKLOG_FULL');
    assert.ok((await waiting()) >= 3);
  });
});
