import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { clientKey, createAuthFailureLimiter, secretMatches } from '../../src/api/auth-guard.js';
import { AppError } from '../../src/domain/errors.js';
import { adminToken, startTestApp, type TestApp } from '../helpers/test-app.js';

describe('key checks are constant-time', () => {
  test('secretMatches compares digests: any length, any content, no early answer on length', () => {
    assert.equal(secretMatches('sdk-key-1234', 'sdk-key-1234'), true);
    for (const given of ['', 'sdk-key-123', 'sdk-key-12345', 'sdk-key-1235', 'SDK-KEY-1234', 'sdk-key-1234\u0000', 'sdk-kéy-1234']) {
      assert.equal(secretMatches(given, 'sdk-key-1234'), false, JSON.stringify(given));
    }
    assert.equal(secretMatches('ключ-🔑', 'ключ-🔑'), true);
  });
});

describe('repeated failed authentication from one client is answered 429', () => {
  let app: TestApp;
  let now = 1_700_000_000_000;
  const impressions = JSON.stringify({ impressions: [{ key: 'u', split: 'f', treatment: 'on', time: 1_700_000_000_000 }] });

  const ingest = (remoteAddress: string, key: string) =>
    app.server.inject({ method: 'POST', url: '/v1/impressions', remoteAddress, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, payload: impressions });
  const webhook = (remoteAddress: string, token: string) =>
    app.server.inject({ method: 'POST', url: `/webhooks/split/impressions?token=${token}`, remoteAddress, headers: { 'content-type': 'application/json' }, payload: '[]' });
  const admin = (remoteAddress: string, token: string) => app.server.inject({ method: 'GET', url: '/admin/v1/environments', remoteAddress, headers: { authorization: `Bearer ${token}` } });

  before(async () => {
    app = await startTestApp({ workers: false, clock: () => now, env: { FLAGSTREAM_AUTH_FAILURE_LIMIT: '3', FLAGSTREAM_AUTH_FAILURE_WINDOW: '1m' } });
    await app.apply({ environments: [{ id: 'env-auth', sdkKeys: ['good-sdk-key'], webhookToken: 'good-webhook-token' }] });
  });
  after(() => app.close());

  test('after N failures within the window: 429 with Retry-After for any credential, until the window ends', async () => {
    for (let attempt = 0; attempt < 3; attempt += 1) assert.equal((await ingest('198.51.100.1', `guess-${attempt}`)).statusCode, 401);
    const limited = await ingest('198.51.100.1', 'guess-3');
    assert.equal(limited.statusCode, 429);
    assert.equal(limited.headers['retry-after'], '60');
    assert.deepEqual(JSON.parse(limited.body), { error: { code: 'FLAGSTREAM_ERR_TOO_MANY_AUTH_FAILURES', message: 'too many failed authentications from this address; retry in 60 s', field: 'authorization' } });
    // The right key is not even looked at: a limited client learns nothing by guessing on.
    assert.equal((await ingest('198.51.100.1', 'good-sdk-key')).statusCode, 429);
    // One limit per client across ingest and admin.
    assert.equal((await admin('198.51.100.1', adminToken)).statusCode, 429);

    // Other clients are not affected.
    assert.equal((await ingest('198.51.100.2', 'good-sdk-key')).statusCode, 202);
    assert.equal((await admin('198.51.100.2', adminToken)).statusCode, 200);

    now += 45_000;
    assert.equal((await ingest('198.51.100.1', 'good-sdk-key')).headers['retry-after'], '15');
    now += 15_000;
    assert.equal((await ingest('198.51.100.1', 'good-sdk-key')).statusCode, 202);
    assert.equal((await ingest('198.51.100.1', 'guess-again')).statusCode, 401);
  });

  test('successful requests are never counted', async () => {
    for (let round = 0; round < 20; round += 1) assert.equal((await ingest('198.51.100.3', 'good-sdk-key')).statusCode, 202);
    assert.equal((await ingest('198.51.100.3', 'bad')).statusCode, 401);
    for (let round = 0; round < 20; round += 1) assert.equal((await ingest('198.51.100.3', 'good-sdk-key')).statusCode, 202);
    assert.equal((await ingest('198.51.100.3', 'bad')).statusCode, 401);
    assert.equal((await ingest('198.51.100.3', 'bad')).statusCode, 401);
    assert.equal((await ingest('198.51.100.3', 'bad')).statusCode, 429);
  });

  test('webhook tokens and the admin token are limited the same way', async () => {
    for (let attempt = 0; attempt < 3; attempt += 1) assert.equal((await webhook('198.51.100.4', `token-${attempt}`)).statusCode, 401);
    assert.equal((await webhook('198.51.100.4', 'good-webhook-token')).statusCode, 429);
    for (let attempt = 0; attempt < 3; attempt += 1) assert.equal((await admin('198.51.100.5', `admin-${attempt}`)).statusCode, 401);
    const limited = await admin('198.51.100.5', adminToken);
    assert.equal(limited.statusCode, 429);
    assert.ok(Number(limited.headers['retry-after']) > 0);
  });

  test('the addresses of one IPv6 /64 share a count', async () => {
    for (const host of ['1', '2', 'ffff:1']) assert.equal((await ingest(`2001:db8:5:6::${host}`, 'bad')).statusCode, 401);
    assert.equal((await ingest('2001:db8:5:6:abcd::9', 'good-sdk-key')).statusCode, 429);
    assert.equal((await ingest('2001:db8:5:7::1', 'good-sdk-key')).statusCode, 202);
    assert.equal(clientKey('::ffff:198.51.100.9'), '198.51.100.9');
  });
});

describe('the failure counter', () => {
  const unauthorized = () => {
    throw new AppError('FLAGSTREAM_ERR_UNAUTHORIZED', 'no');
  };
  const reply = { header: () => reply } as unknown as FastifyReply;
  const from = (ip: string) => ({ ip }) as FastifyRequest;

  test('remembers a bounded number of clients, forgetting the least recently failing first', () => {
    const limiter = createAuthFailureLimiter({ limit: 2, windowMs: 60_000, clock: () => 0, maxClients: 100 });
    for (let client = 0; client < 5_000; client += 1) {
      assert.throws(() => limiter.authenticate(from(`10.${client >> 16}.${(client >> 8) & 255}.${client & 255}`), reply, unauthorized), /no/);
    }
    assert.equal(limiter.size, 100);
    const recent = from('10.0.19.135'); // client 4999
    assert.throws(() => limiter.authenticate(recent, reply, unauthorized), /no/);
    assert.throws(() => limiter.authenticate(recent, reply, () => 'ok'), /too many failed authentications/);
    assert.equal(limiter.authenticate(from('10.0.0.0'), reply, () => 'ok'), 'ok', 'the oldest was forgotten');
  });

  test('0 turns the limit off; errors other than a failed credential are not counted', () => {
    const off = createAuthFailureLimiter({ limit: 0, windowMs: 60_000, clock: () => 0 });
    for (let attempt = 0; attempt < 10; attempt += 1) assert.throws(() => off.authenticate(from('10.0.0.1'), reply, unauthorized), /no/);
    assert.equal(off.size, 0);
    const limiter = createAuthFailureLimiter({ limit: 1, windowMs: 60_000, clock: () => 0 });
    assert.throws(() => limiter.authenticate(from('10.0.0.1'), reply, () => {
      throw new Error('redis down');
    }));
    assert.equal(limiter.authenticate(from('10.0.0.1'), reply, () => 'ok'), 'ok');
  });
});
