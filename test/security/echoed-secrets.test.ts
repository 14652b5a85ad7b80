import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { runFlagstream } from '../helpers/cli.js';
import { HttpReceiver, type ReceivedRequest } from '../helpers/http-receiver.js';
import { createTestRedis, testRedisUrl } from '../helpers/redis.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

const sentinels = {
  bearer: 'SENTINEL-bearer-Zq8/x+y=1',
  apiKeyHeader: 'SENTINEL-apikey-7&k=v %20',
  basicPassword: 'SENTINEL-basic-password-41',
  webhookSecret: `whsec_${Buffer.from('SENTINEL-whsec-0123456789').toString('base64')}`,
  amplitudeKey: 'SENTINELAMPLITUDEKEY0123456789ab',
  segmentWriteKey: 'SENTINELSEGMENTWRITEKEY012345678',
  sdkKey: 'SENTINEL-SDK-KEY-echo-7f3a',
};

/**
 * Every form a sentinel could be found in, computed here independently of the code under test:
 * raw, URL-encoded, and base64 (standard and URL-safe) at each of the three byte alignments.
 */
function tracesOf(secret: string): string[] {
  const traces = [secret, encodeURIComponent(secret)];
  for (let pad = 0; pad < 3; pad += 1) {
    for (const encoding of ['base64', 'base64url'] as const) {
      const encoded = Buffer.from(`${'\0'.repeat(pad)}${secret}`).toString(encoding);
      // Drop the first group (it mixes in the padding) and the last (it mixes in what follows).
      traces.push(encoded.slice(pad === 0 ? 0 : 4, -4));
    }
  }
  return traces;
}

/** What a careless vendor answers: the request's credentials, body and URL, in the form the path asks for. */
function echo(request: ReceivedRequest): { status: number; headers: Record<string, string>; body: string } {
  const credentials = ['authorization', 'x-api-key'].filter((name) => request.headers[name] !== undefined).map((name) => `${name}: ${String(request.headers[name])}`);
  const others = Object.entries(request.headers).filter(([name]) => !credentials.some((line) => line.startsWith(`${name}:`)));
  const text = [...credentials, request.body.slice(0, 200), request.url, ...others.map(([name, value]) => `${name}: ${String(value)}`)].join('\n');
  const mode = request.url.split('/')[1];
  const body = mode === 'b64' ? Buffer.from(text).toString('base64') : mode === 'url' ? encodeURIComponent(text) : `echo: ${text}`;
  const headers = Object.fromEntries(credentials.map((line) => [`x-echo-${line.slice(0, line.indexOf(':'))}`, encodeURIComponent(line)]));
  return { status: mode === 'r503' ? 503 : 400, headers, body };
}

async function dumpKeys(redis: Redis, prefix: string): Promise<string> {
  const parts: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    for (const key of keys) {
      const type = await redis.type(key);
      if (type === 'string') parts.push(key, (await redis.get(key)) ?? '');
      else if (type === 'hash') parts.push(key, JSON.stringify(await redis.hgetall(key)));
      else if (type === 'list') parts.push(key, JSON.stringify(await redis.lrange(key, 0, 9_999)));
      else if (type === 'set') parts.push(key, JSON.stringify(await redis.srandmember(key, 10_000)));
      else if (type === 'zset') parts.push(key, JSON.stringify(await redis.zrange(key, 0, 9_999)));
      else if (type === 'stream') parts.push(key, JSON.stringify(await redis.xrange(key, '-', '+', 'COUNT', 10_000)));
      else parts.push(key, `(${type})`);
    }
  } while (cursor !== '0');
  return parts.join('\n');
}

describe('secrets a destination echoes back are stored, logged and shown nowhere', () => {
  let app: TestApp;
  let receiver: HttpReceiver;
  let logs = '';
  const encryptionKey = randomBytes(32).toString('base64');
  const basic = `Basic ${Buffer.from(`svc-user:${sentinels.basicPassword}`).toString('base64')}`;
  const destinations = [
    { id: 'hook-raw', type: 'webhook', settings: { url: '', secret: sentinels.webhookSecret, headers: { authorization: `Bearer ${sentinels.bearer}` } }, path: '/raw/hook' },
    { id: 'hook-b64', type: 'webhook', settings: { url: '', headers: { authorization: basic } }, path: '/b64/hook' },
    { id: 'hook-url', type: 'webhook', settings: { url: '', headers: { 'x-api-key': sentinels.apiKeyHeader } }, path: '/url/hook' },
    { id: 'hook-503', type: 'webhook', settings: { url: '', headers: { authorization: `Bearer ${sentinels.bearer}` } }, path: '/r503/hook', delivery: { retrySchedule: [20], circuitBreakerThreshold: 100 } },
    { id: 'amp-b64', type: 'amplitude', settings: { apiKey: sentinels.amplitudeKey, baseUrl: '' }, path: '/b64' },
    { id: 'seg-raw', type: 'segment', settings: { writeKey: sentinels.segmentWriteKey, baseUrl: '' }, path: '/raw' },
  ];

  before(async () => {
    receiver = await HttpReceiver.start();
    receiver.respond = echo;
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => (logs += chunk.toString()));
    app = await startTestApp({ logStream: stream, env: { FLAGSTREAM_ENCRYPTION_KEY: encryptionKey } });
    await app.apply({
      environments: [
        {
          id: 'env-echo',
          sdkKeys: [sentinels.sdkKey],
          destinations: destinations.map(({ path, settings, ...destination }) => ({
            ...destination,
            settings: { ...settings, ...('url' in settings ? { url: `${receiver.url}${path}`, maxBatchWait: 0 } : { baseUrl: `${receiver.url}${path}` }) },
          })),
        },
      ],
    } as never);
  });
  after(async () => {
    await app.close();
    await receiver.close();
  });

  test('dead letters, Redis, logs, the admin API and the CLI carry none of them, in any form', async () => {
    const accepted = await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'user-1', split: 'f', treatment: 'on', time: 1_700_000_000_000 }] }, { authorization: `Bearer ${sentinels.sdkKey}` });
    assert.equal(accepted.status, 202);
    await app.waitForState(async () => (await app.ctx.deadLetters.listIds({})).length === destinations.length, 20_000, 'a dead letter per destination');

    // The vendor did echo the secrets: without scrubbing they would be there to find.
    const answered = receiver.requests.map((request) => echo(request).body).join('\n');
    for (const name of ['bearer', 'apiKeyHeader', 'amplitudeKey'] as const) assert.ok(tracesOf(sentinels[name]).some((trace) => answered.includes(trace)), `${name} was echoed`);
    const letters = await app.ctx.deadLetters.list({});
    assert.ok(letters.every((letter) => letter.error.message.includes('[redacted]')), 'each dead letter quotes the answer, scrubbed');

    const apiOutputs: string[] = [];
    for (const path of ['/dead-letters', '/health/destinations', '/config']) apiOutputs.push(JSON.stringify((await app.admin('GET', path)).body));
    for (const letter of letters) apiOutputs.push(JSON.stringify((await app.admin('GET', `/dead-letters/${letter.id}`)).body));
    for (const { id } of destinations) {
      const tested = await app.admin('POST', `/destinations/${id}/test`);
      assert.equal(tested.status, 200, JSON.stringify(tested.body));
      apiOutputs.push(JSON.stringify(tested.body));
    }
    assert.ok(apiOutputs.some((output) => output.includes('[redacted]')), 'the test answers were shown, scrubbed');

    const cliEnv = { REDIS_URL: testRedisUrl, FLAGSTREAM_REDIS_PREFIX: app.ctx.env.FLAGSTREAM_REDIS_PREFIX, FLAGSTREAM_ENCRYPTION_KEY: encryptionKey, FLAGSTREAM_DESTINATION_ALLOWLIST: '127.0.0.1' };
    const cliOutputs: string[] = [];
    const rawLetter = letters.find((letter) => letter.destinationId === 'hook-raw');
    for (const args of [['dlq', 'show', rawLetter?.id ?? ''], ['destinations', 'status', '--json'], ['destinations', 'test', 'hook-raw', '--json']]) {
      const result = await runFlagstream(args, cliEnv);
      cliOutputs.push(result.stdout + result.stderr);
    }
    assert.ok(cliOutputs.every((output) => output.includes('[redacted]')), 'the CLI showed the answers, scrubbed');
    assert.ok(logs.includes('impressions dead-lettered'), 'the failures were logged');

    const redis = createTestRedis();
    let stored: string;
    try {
      stored = await dumpKeys(redis, app.ctx.env.FLAGSTREAM_REDIS_PREFIX);
    } finally {
      redis.disconnect();
    }
    assert.ok(stored.includes('dlq:item:'), 'the scan saw the dead letters');

    const places = { redis: stored, logs, api: apiOutputs.join('\n'), cli: cliOutputs.join('\n') };
    for (const [name, secret] of Object.entries(sentinels)) {
      for (const trace of tracesOf(secret)) {
        for (const [place, text] of Object.entries(places)) assert.ok(!text.includes(trace), `${name} (as "${trace}") found in ${place}`);
      }
    }
  });
});
