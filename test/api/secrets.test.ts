import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { HttpReceiver } from '../helpers/http-receiver.js';
import { postJson, startTestApp, type TestApp } from '../helpers/test-app.js';

const sentinels = {
  sdkKey: 'SENTINEL-SDK-KEY-7f3a',
  webhookToken: 'SENTINEL-WEBHOOK-TOKEN-91bc',
  secret: 'whsec_U0VOVElORUwtV0VCSE9PSy1TRUNSRVQ=',
  header: 'Bearer SENTINEL-DOWNSTREAM-TOKEN-55aa',
};

describe('secrets never appear in logs, API output, metrics or dead letters', () => {
  let app: TestApp;
  let receiver: HttpReceiver;
  let logs = '';

  before(async () => {
    receiver = await HttpReceiver.start();
    receiver.respond = () => ({ status: 401, body: 'token rejected' });
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => (logs += chunk.toString()));
    app = await startTestApp({ logStream: stream });
    await app.apply({
      environments: [
        {
          id: 'env-s',
          sdkKeys: [sentinels.sdkKey],
          webhookToken: sentinels.webhookToken,
          destinations: [{ id: 'hook-s', type: 'webhook', settings: { url: `${receiver.url}/s`, secret: sentinels.secret, headers: { authorization: sentinels.header }, maxBatchWait: 0 } }],
        },
      ],
    });
  });
  after(async () => {
    await app.close();
    await receiver.close();
  });

  test('a delivery that fails, and everything an operator can read afterwards, carry no secret', async () => {
    await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'user-1', split: 'f', treatment: 'on', time: 1_718_900_000_000 }] }, { authorization: `Bearer ${sentinels.sdkKey}` });
    await postJson(`${app.url}/v1/impressions`, { impressions: [{ key: 'user-2', split: 'f', treatment: 'on', time: 1_718_900_000_001 }] }, { authorization: 'Bearer wrong-key' });
    await app.waitForDeliveries(1, undefined, 'hook-s');
    assert.equal(receiver.requests[0]?.headers.authorization, sentinels.header, 'the secret header did reach the destination');

    const outputs = [
      logs,
      JSON.stringify((await app.admin('GET', '/config')).body),
      JSON.stringify((await app.admin('GET', '/environments/env-s')).body),
      JSON.stringify((await app.admin('GET', '/destinations/hook-s')).body),
      JSON.stringify((await app.admin('GET', '/dead-letters')).body),
      JSON.stringify(await app.ctx.deadLetters.list({})),
      (await app.server.inject({ method: 'GET', url: '/metrics' })).body,
    ];
    assert.ok(logs.includes('impressions dead-lettered'), 'the failure was logged');
    for (const [name, value] of Object.entries(sentinels)) {
      const secretPart = value.replace(/^Bearer |^whsec_/, '');
      outputs.forEach((output, index) => assert.ok(!output.includes(secretPart), `${name} leaked into output #${index}`));
    }
  });
});
