import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SplitFactory } from '@splitsoftware/splitio';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

const changeNumber = 1_718_800_000_000;

function flagDefinition(name: string, impressionsDisabled: boolean) {
  return {
    name,
    trafficTypeName: 'user',
    changeNumber,
    status: 'ACTIVE',
    killed: false,
    defaultTreatment: 'off',
    seed: 1314112417,
    trafficAllocation: 100,
    trafficAllocationSeed: -1364119282,
    algo: 2,
    impressionsDisabled,
    sets: [],
    configurations: {},
    conditions: [
      {
        conditionType: 'ROLLOUT',
        matcherGroup: { combiner: 'AND', matchers: [{ keySelector: { trafficType: 'user', attribute: null }, matcherType: 'ALL_KEYS', negate: false }] },
        partitions: [{ treatment: 'on', size: 100 }, { treatment: 'off', size: 0 }],
        label: 'default rule',
      },
    ],
  };
}

/**
 * The real Split Node SDK, with `urls.events` and `urls.telemetry` pointed at flagstream and
 * `urls.sdk` at a stand-in for Split's flag-definition API (a real local HTTP server).
 */
describe('the official Split Node SDK against flagstream', () => {
  let app: TestApp;
  let receiver: HttpReceiver;
  let splitBackend: HttpReceiver;

  before(async () => {
    receiver = await HttpReceiver.start();
    splitBackend = await HttpReceiver.start();
    splitBackend.respond = (request) => {
      if (request.url.startsWith('/api/splitChanges')) {
        const since = Number(new URL(request.url, 'http://x').searchParams.get('since'));
        const flags = since === -1 ? [flagDefinition('new_checkout', false), flagDefinition('quiet_flag', true), flagDefinition('legacy_flag', false)] : [];
        return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ff: { s: since, t: changeNumber, d: flags }, rbs: { s: -1, t: -1, d: [] } }) };
      }
      return { status: 404 };
    };
    app = await startTestApp();
    await app.apply({
      environments: [
        {
          id: 'env-prod',
          name: 'Production',
          sdkKeys: ['server-side-sdk-key'],
          flags: [
            { name: 'new_checkout', trackImpressions: true },
            { name: 'quiet_flag', trackImpressions: false },
            // Tracking is off in flagstream although this (older) SDK still sends its impressions.
            { name: 'legacy_flag', trackImpressions: false },
          ],
          destinations: [{ id: 'hook', type: 'webhook', settings: { url: `${receiver.url}/in` } }],
        },
      ],
    });
  });
  after(async () => {
    await app.close();
    await receiver.close();
    await splitBackend.close();
  });

  test('impressions, counts and unique keys flow in with no SDK errors; tracking-off flags never reach the receiver', async () => {
    const factory = SplitFactory({
      core: { authorizationKey: 'server-side-sdk-key', labelsEnabled: true, IPAddressesEnabled: true },
      urls: { sdk: `${splitBackend.url}/api`, auth: `${splitBackend.url}/api`, events: `${app.url}/api`, telemetry: `${app.url}/api` },
      streamingEnabled: false,
      sync: { impressionsMode: 'DEBUG' },
      scheduler: { featuresRefreshRate: 3600, segmentsRefreshRate: 3600, impressionsRefreshRate: 3600, eventsPushRate: 3600, telemetryRefreshRate: 3600 },
      startup: { readyTimeout: 10, requestTimeoutBeforeReady: 10, retriesOnFailureBeforeReady: 1 },
      debug: false,
    });
    const client = factory.client();
    await client.ready();
    assert.equal(client.getTreatment('user-42', 'new_checkout'), 'on');
    assert.equal(client.getTreatment({ matchingKey: 'user-43', bucketingKey: 'account-7' }, 'new_checkout', undefined, { properties: { plan: 'pro' } }), 'on');
    assert.equal(client.getTreatment('user-44', 'quiet_flag'), 'on');
    assert.equal(client.getTreatment('user-45', 'legacy_flag'), 'on');
    client.track('user-42', 'user', 'checkout', 10);
    // destroy() flushes impressions, counts, unique keys, events and telemetry.
    await client.destroy();

    await app.waitForRoutings(1);
    await receiver.waitFor(() => receiver.impressions().length >= 2, 15_000, 'two tracked impressions');
    const received = receiver.impressions();
    assert.deepEqual(received.map((i) => i.key).sort(), ['user-42', 'user-43']);
    for (const impression of received) {
      assert.equal(impression.split, 'new_checkout');
      assert.equal(impression.treatment, 'on');
      assert.equal(impression.label, 'default rule');
      assert.equal(impression.splitVersionNumber, changeNumber);
      assert.equal(impression.sdk, 'nodejs');
      assert.match(String(impression.sdkVersion), /^\d+\.\d+\.\d+/);
      assert.equal(impression.environmentId, 'env-prod');
    }
    const withBucketing = received.find((i) => i.key === 'user-43');
    assert.equal(withBucketing?.bucketingKey, 'account-7');
    assert.equal(withBucketing?.properties, '{"plan":"pro"}');

    // Every request the SDK made to flagstream was answered 2xx.
    const requests = await app.ctx.metrics.ingestRequests.get();
    const byEndpoint = new Map(requests.values.map((v) => [`${v.labels.endpoint} ${v.labels.status}`, v.value]));
    assert.ok(byEndpoint.get('/api/testImpressions/bulk 200'), `bulk answered 200: ${[...byEndpoint.keys()].join(', ')}`);
    assert.ok(byEndpoint.get('/api/testImpressions/count 200'), 'count answered 200');
    assert.ok(byEndpoint.get('/api/v1/keys/ss 200'), 'unique keys answered 200');
    assert.ok(byEndpoint.get('/api/events/bulk 200'), 'events answered 200');
    assert.ok(![...byEndpoint.keys()].some((k) => !/ 2\d\d$/.test(k)), `no error answers: ${[...byEndpoint.keys()].join(', ')}`);

    // quiet_flag (impressionsDisabled in the SDK): only counted and keys recorded; legacy_flag: dropped by flagstream.
    const stats = new Map((await app.ctx.stats.flagStats('env-prod')).map((s) => [s.flag, s]));
    assert.equal(stats.get('quiet_flag')?.counted, 1);
    assert.equal(stats.get('quiet_flag')?.uniqueKeys, 1);
    assert.equal(stats.get('legacy_flag')?.dropped.tracking_off, 1);
    assert.equal(stats.get('new_checkout')?.treatments.on, 2);
  });
});
