import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import type { GoogleAnalyticsBody } from '../../src/connectors/google-analytics/google-analytics-connector.js';
import type { HeapTrackEvent, HeapUserProperties } from '../../src/connectors/heap/heap-connector.js';
import type { NewRelicEvent } from '../../src/connectors/newrelic/newrelic-connector.js';
import type { DestinationTestReport } from '../../src/delivery/test-destination.js';
import { HttpReceiver, type ReceivedRequest } from '../helpers/http-receiver.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

const apiSecret = 'ga-api-secret-do-not-print';

/**
 * Google Analytics, Heap and New Relic through the whole stack (ingest → route → deliver), each
 * pointed by `baseUrl` at a real local receiver: what reaches them, and what never does.
 */
describe('google-analytics, heap and newrelic end to end', () => {
  let app: TestApp;
  let receiver: HttpReceiver;

  before(async () => {
    receiver = await HttpReceiver.start();
    receiver.respond = (request) =>
      request.url.startsWith('/ga/debug/mp/collect')
        ? { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ validationMessages: [{ fieldPath: 'events[0].params.split_label', description: 'Value exceeds the maximum length.', validationCode: 'VALUE_INVALID' }] }) }
        : { status: 200, body: '{"success":true}' };
    app = await startTestApp();
    await app.apply({
      environments: [
        {
          id: 'env-prod',
          name: 'Production',
          sdkKeys: ['prod-sdk-key'],
          flags: [
            { name: 'new_checkout', trafficType: 'user', trackImpressions: true },
            { name: 'quiet_flag', trafficType: 'user', trackImpressions: false },
          ],
          destinations: [
            { id: 'ga', type: 'google-analytics', settings: { measurementId: 'G-TEST123', apiSecret, baseUrl: `${receiver.url}/ga` } },
            { id: 'heap', type: 'heap', settings: { appId: '1234567890', baseUrl: `${receiver.url}/heap`, userProperties: true } },
            { id: 'nr', type: 'newrelic', settings: { accountId: '1234567', apiKey: 'nr-license-key', baseUrl: `${receiver.url}/nr` } },
          ],
        },
      ],
    });
  });
  after(async () => {
    await app.close();
    await receiver.close();
  });

  const to = (prefix: string): ReceivedRequest[] => receiver.requests.filter((r) => r.url.startsWith(prefix));

  test('impressions of a tracking-off flag reach none of the three vendors; the others do, once', async () => {
    const time = Date.now() - 1000;
    const routed = app.completedRoutings.length;
    const response = await postJson(
      `${app.url}/v1/impressions`,
      {
        impressions: [
          { key: 'user-20', split: 'quiet_flag', treatment: 'on', time },
          { key: 'user-20', split: 'new_checkout', treatment: 'on', label: 'default rule', time },
          { key: 'user-20', split: 'quiet_flag', treatment: 'off', time: time + 1 },
        ],
      },
      { authorization: 'Bearer prod-sdk-key' },
    );
    assert.equal(response.status, 202);
    await app.waitForRoutings(routed + 1);
    for (const destination of ['ga', 'heap', 'nr']) await app.waitForDeliveries(1, 15_000, destination);

    // Everything the three received, once every delivery job has completed: nothing else is on its way.
    const ga = to('/ga/mp/collect').map((r) => JSON.parse(r.body) as GoogleAnalyticsBody);
    const heapTrack = to('/heap/api/track').map((r) => JSON.parse(r.body) as { events: HeapTrackEvent[] });
    const heapUsers = to('/heap/api/add_user_properties').map((r) => JSON.parse(r.body) as { users: HeapUserProperties[] });
    const nr = to('/nr/v1/accounts/1234567/events').map((r) => JSON.parse(gunzipSync(r.raw).toString('utf8')) as NewRelicEvent[]);

    assert.deepEqual(ga.flatMap((b) => b.events.map((e) => e.params.split_name)), ['new_checkout']);
    assert.deepEqual(heapTrack.flatMap((b) => b.events.map((e) => e.properties.split)), ['new_checkout']);
    assert.deepEqual(heapUsers.flatMap((b) => b.users), [{ identity: 'user-20', properties: { 'Split.new_checkout': 'on' } }]);
    assert.deepEqual(nr.flat().map((e) => e.split), ['new_checkout']);
    assert.equal(receiver.requests.some((r) => r.body.includes('quiet_flag') || (r.url.startsWith('/nr') && gunzipSync(r.raw).toString('utf8').includes('quiet_flag'))), false);

    const impressionId = (response.body as { ids: string[] }).ids[1];
    assert.equal(ga[0]?.events[0]?.params.split_impression_id, impressionId);
    assert.equal(heapTrack[0]?.events[0]?.idempotency_key, impressionId);
    assert.equal(nr[0]?.[0]?.impressionId, impressionId);
    const quiet = (await app.ctx.stats.flagStats('env-prod')).find((f) => f.flag === 'quiet_flag');
    assert.equal(quiet?.dropped.tracking_off, 2);
  });

  test('destinations test of a GA destination goes to the validation server and reports its messages, never the API secret', async () => {
    const before = receiver.requests.length;
    const { status, body } = await app.admin('POST', '/destinations/ga/test');
    assert.equal(status, 200);
    const report = body as DestinationTestReport;
    assert.equal(report.outcome, 'rejected');
    assert.equal(report.validationOnly, true);
    assert.equal(report.reason, 'GA validation: events[0].params.split_label: Value exceeds the maximum length. (VALUE_INVALID)');
    const [request] = receiver.requests.slice(before);
    assert.match(request?.url ?? '', /^\/ga\/debug\/mp\/collect\?measurement_id=G-TEST123&api_secret=/);
    assert.equal(receiver.requests.length, before + 1, 'nothing went to /mp/collect');
    assert.equal(JSON.stringify(report).includes(apiSecret), false);
  });
});
