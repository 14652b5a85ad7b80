import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { makeImpression } from '../helpers/impressions.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

interface ErrorBody {
  error: { code: string; message: string; field?: string; details?: { field: string; message: string }[] };
}

const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

describe('admin API: strict bodies, unknown names are 404', () => {
  let app: TestApp;

  before(async () => {
    app = await startTestApp({ workers: false, env: { FLAGSTREAM_ENCRYPTION_KEY: randomBytes(32).toString('base64') } });
    await app.apply({
      environments: [
        { id: 'qa', name: 'QA', sdkKeys: ['qa-key-1', 'qa-key-2'], flags: [{ name: 'checkout_v2', trackImpressions: true }], destinations: [{ id: 'qa-hook', type: 'webhook', settings: { url: 'https://hooks.example.com/qa', secret } }] },
        { id: 'prod', sdkKeys: ['prod-key'] },
      ],
    });
  });
  after(() => app.close());

  test('PUT /environments/qa with a typo is a 400 naming it, and empties nothing', async () => {
    const response = await app.admin('PUT', '/environments/qa', { sdkKey: ['qa-key-3'] });
    assert.equal(response.status, 400);
    const { error } = response.body as ErrorBody;
    assert.equal(error.field, 'sdkKey');
    assert.match(error.message, /did you mean sdkKeys/);
    assert.deepEqual((await app.ctx.configStore.getEnvironment('qa'))?.sdkKeys, ['qa-key-1', 'qa-key-2']);
  });

  test('every body is strict: environments, flags, destinations (connector settings included)', async () => {
    const cases: [method: 'PUT' | 'PATCH' | 'POST', path: string, body: unknown, field: string, suggestion: RegExp][] = [
      ['PUT', '/environments/qa', { sdkKeys: ['qa-key-1'], labelsEnabld: false }, 'labelsEnabld', /labelsEnabled/],
      ['PATCH', '/environments/qa/flags/checkout_v2', { trackImpresions: false }, 'trackImpresions', /trackImpressions/],
      ['PUT', '/environments/qa/flags/new_flag', { traficType: 'account' }, 'traficType', /trafficType/],
      ['POST', '/environments/qa/destinations', { id: 'seg', type: 'segment', settings: { writeKey: 'wk', regoin: 'eu' } }, 'settings.regoin', /region/],
      ['PATCH', '/destinations/qa-hook', { settings: { bachSize: 10 } }, 'settings.bachSize', /batchSize/],
      ['PUT', '/destinations/qa-hook', { type: 'webhook', settings: { url: 'https://hooks.example.com/qa' }, delivery: { bachSize: 10 } }, 'delivery.bachSize', /settings\.batchSize/],
    ];
    for (const [method, path, body, field, suggestion] of cases) {
      const response = await app.admin(method, path, body);
      assert.equal(response.status, 400, `${method} ${path}`);
      const { error } = response.body as ErrorBody;
      assert.equal(error.field, field, `${method} ${path}`);
      assert.match(error.message, suggestion);
    }
    const stored = await app.ctx.configStore.getEnvironment('qa');
    assert.deepEqual(stored?.flags.map((f) => [f.name, f.trackImpressions]), [['checkout_v2', true]], 'no flag changed or created');
    assert.equal(stored?.destinations.length, 1);
  });

  test('PATCH of a flag that does not exist is a 404 and creates nothing; PUT creates it', async () => {
    const typo = await app.admin('PATCH', '/environments/qa/flags/checkout_v3', { trackImpressions: false });
    assert.equal(typo.status, 404);
    assert.match((typo.body as ErrorBody).error.message, /no flag "checkout_v3".*did you mean checkout_v2\?/);
    assert.deepEqual((await app.ctx.configStore.getEnvironment('qa'))?.flags.map((f) => f.name), ['checkout_v2']);
    const created = await app.admin('PUT', '/environments/qa/flags/checkout_v3', { trackImpressions: false });
    assert.equal(created.status, 201);
    assert.equal((await app.admin('DELETE', '/environments/qa/flags/checkout_v3')).status, 204);
  });

  test('unknown environments and destinations are 404 on every route', async () => {
    const routes: [method: 'GET' | 'PUT' | 'PATCH' | 'POST' | 'DELETE', path: string, body?: unknown][] = [
      ['GET', '/environments/nope'],
      ['GET', '/environments/nope/stats'],
      ['GET', '/environments/nope/flags'],
      ['PUT', '/environments/nope/flags/f', { trackImpressions: false }],
      ['PATCH', '/environments/nope/flags/f', { trackImpressions: false }],
      ['DELETE', '/environments/nope/flags/f'],
      ['GET', '/environments/nope/destinations'],
      ['POST', '/environments/nope/destinations', { id: 'x', type: 'webhook', settings: { url: 'https://x.example.com' } }],
      ['DELETE', '/environments/nope'],
      ['GET', '/destinations/nope'],
      ['PUT', '/destinations/nope', { type: 'webhook', settings: { url: 'https://x.example.com' } }],
      ['PATCH', '/destinations/nope', { enabled: false }],
      ['DELETE', '/destinations/nope'],
      ['POST', '/destinations/nope/enable'],
      ['GET', '/destinations/nope/health'],
      ['POST', '/destinations/nope/pause', {}],
      ['POST', '/destinations/nope/resume'],
      ['POST', '/destinations/nope/test'],
      ['GET', '/dead-letters?destination=nope'],
      ['POST', '/dead-letters/replay', { destination: 'nope' }],
      ['POST', '/dead-letters/purge', { destination: 'nope' }],
    ];
    for (const [method, path, body] of routes) {
      const response = await app.admin(method, path, body);
      assert.equal(response.status, 404, `${method} ${path}: ${JSON.stringify(response.body)}`);
    }
    assert.equal(await app.ctx.configStore.hasEnvironment('nope'), false);
  });

  test('dead letters of a deleted destination can still be listed; a typo in a purge body never widens it', async () => {
    await app.ctx.deadLetters.record({
      key: 'gone-1',
      destinationId: 'gone-hook',
      environmentId: 'qa',
      connectorType: 'webhook',
      reason: 'retries_exhausted',
      error: { message: 'HTTP 503' },
      attempts: 3,
      firstAttemptAt: 1,
      lastAttemptAt: 2,
      impressions: [makeImpression()],
    });
    const listed = await app.admin('GET', '/dead-letters?destination=gone-hook');
    assert.equal(listed.status, 200);
    assert.equal((listed.body as { deadLetters: unknown[] }).deadLetters.length, 1);
    const typo = await app.admin('POST', '/dead-letters/purge', { all: true, statuss: 'replayed' });
    assert.equal(typo.status, 400);
    assert.equal((typo.body as ErrorBody).error.field, 'statuss');
    assert.equal((await app.ctx.deadLetters.listIds({})).length, 1, 'nothing purged');
    const wrongType = await app.admin('POST', '/dead-letters/purge', { destination: 7 });
    assert.equal(wrongType.status, 400);
  });

  test('query strings are strict too: a mistyped dryRun never applies for real', async () => {
    const response = await app.server.inject({
      method: 'POST',
      url: '/admin/v1/config/apply?dryrun=true',
      headers: { authorization: 'Bearer test-admin-token', 'content-type': 'application/json' },
      payload: JSON.stringify({ environments: [{ id: 'qa', sdkKeys: [] }] }),
    });
    assert.equal(response.statusCode, 400);
    assert.match(response.body, /dryrun.*did you mean dryRun/);
    assert.equal((await app.ctx.configStore.getEnvironment('qa'))?.sdkKeys.length, 2);
  });

  test('PUT of an environment cannot take another environment\'s SDK key; durations read back in the human form', async () => {
    const conflict = await app.admin('PUT', '/environments/qa', { sdkKeys: ['prod-key'] });
    assert.equal(conflict.status, 400);
    assert.equal((conflict.body as ErrorBody).error.field, 'sdkKeys[0]');
    assert.match((conflict.body as ErrorBody).error.message, /environment "prod".*"qa"/);
    const destination = await app.admin('GET', '/destinations/qa-hook');
    assert.deepEqual((destination.body as { delivery: unknown }).delivery, { retrySchedule: ['5s', '5m', '30m', '2h', '5h', '10h', '10h'], timeout: '10s', circuitBreakerThreshold: 10, circuitBreakerCooldown: '1m' });
    // What a GET returns can be PUT back as it is (secrets as [redacted] keep their value).
    assert.equal((await app.admin('PUT', '/destinations/qa-hook', destination.body)).status, 200);
    assert.equal((await app.ctx.configStore.getEnvironment('qa'))?.destinations[0]?.settings.secret, secret);
    const moved = await app.admin('PUT', '/destinations/qa-hook', { ...(destination.body as object), environmentId: 'prod' });
    assert.equal((moved.body as ErrorBody).error.field, 'environmentId');
  });
});
