import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import BugsnagModule, { type Client } from '@bugsnag/node';
import nock from 'nock';
import { type BugsnagFeatureFlagClient, bugsnagImpressionListener, type SplitImpressionData } from '../../src/adapters/index.js';
import { withLocalSplitSdk } from '../helpers/split-localhost.js';

function impressionData(feature: string, treatment: string, keyName = 'user-1'): SplitImpressionData {
  return {
    impression: { feature, keyName, treatment, time: 1_718_900_000_123, label: 'default rule', changeNumber: 1_718_800_000_000 },
    attributes: { plan: 'pro' },
    ip: '10.0.0.5',
    hostname: 'web-1',
    sdkLanguageVersion: 'javascript-11.0.0',
  };
}

/** A stand-in notifier that records every call it gets. */
function recordingClient(): BugsnagFeatureFlagClient & { calls: unknown[][] } {
  const calls: unknown[][] = [];
  return {
    calls,
    addFeatureFlag(...args: unknown[]) {
      calls.push(args);
    },
  };
}

/** The feature flags a real BugSnag client would attach to the next error it reports (nothing is sent). */
function featureFlagsOfNextError(client: Client): Promise<unknown> {
  return new Promise((resolve) => {
    client.notify(new Error('probe'), (event) => {
      resolve(event.getFeatureFlags());
      return false; // do not deliver the report
    });
  });
}

// @bugsnag/node is CommonJS with a `default` that is itself (module.exports.default === module.exports).
const Bugsnag = BugsnagModule.default;

function realClient(): Client {
  return Bugsnag.createClient({ apiKey: '0123456789abcdef0123456789abcdef', autoDetectErrors: false, autoTrackSessions: false, logger: null });
}

describe('bugsnag adapter', () => {
  beforeEach(() => nock.disableNetConnect());
  afterEach(() => nock.enableNetConnect());

  test('declares each evaluated flag with its treatment: addFeatureFlag(<flag>, <treatment>)', () => {
    const client = recordingClient();
    const listener = bugsnagImpressionListener({ client });
    listener.logImpression(impressionData('new_checkout', 'on'));
    listener.logImpression(impressionData('dark_mode', 'off'));
    assert.deepEqual(client.calls, [
      ['new_checkout', 'on'],
      ['dark_mode', 'off'],
    ]);
  });

  test('filter and flagName options; a client getter that gives nothing sends nothing', () => {
    const client = recordingClient();
    let current: BugsnagFeatureFlagClient | undefined = undefined;
    const listener = bugsnagImpressionListener({
      client: () => current,
      filter: (data) => data.impression.treatment !== 'control',
      flagName: (impression) => `split.${impression.feature}`,
    });
    listener.logImpression(impressionData('new_checkout', 'on'));
    current = client;
    listener.logImpression(impressionData('new_checkout', 'control'));
    listener.logImpression(impressionData('new_checkout', 'off'));
    assert.deepEqual(client.calls, [['split.new_checkout', 'off']]);
  });

  test('a notifier that throws does not break the SDK: onError is told, later impressions still go through', () => {
    const errors: unknown[] = [];
    let calls = 0;
    const listener = bugsnagImpressionListener({
      client: {
        addFeatureFlag() {
          calls += 1;
          if (calls === 1) throw new Error('notifier not started');
        },
      },
      onError: (error) => errors.push(error),
    });
    assert.doesNotThrow(() => listener.logImpression(impressionData('a', 'on')));
    listener.logImpression(impressionData('b', 'on'));
    assert.equal(calls, 2);
    assert.match(String(errors[0]), /notifier not started/);
  });

  test('with the real @bugsnag/node notifier, the next error carries the flags; a newer treatment replaces the older', async () => {
    const client = realClient();
    const listener = bugsnagImpressionListener({ client });
    listener.logImpression(impressionData('new_checkout', 'on'));
    listener.logImpression(impressionData('dark_mode', 'off'));
    listener.logImpression(impressionData('new_checkout', 'off'));
    assert.deepEqual(await featureFlagsOfNextError(client), [
      { featureFlag: 'new_checkout', variant: 'off' },
      { featureFlag: 'dark_mode', variant: 'off' },
    ]);
  });

  test('end to end: the real Split SDK (localhost mode) → the adapter → the real BugSnag notifier', async () => {
    const client = realClient();
    const yaml = ['- new_checkout:', '    treatment: "on"', '    keys: "user-1"', '- new_checkout:', '    treatment: "off"', '- dark_mode:', '    treatment: "v2"', ''].join('\n');
    await withLocalSplitSdk(yaml, bugsnagImpressionListener({ client }), async (evaluate) => {
      const seen = await evaluate([
        ['user-1', 'new_checkout'],
        ['user-1', 'dark_mode'],
      ]);
      assert.deepEqual(
        seen.map((data) => [data.impression.feature, data.impression.keyName, data.impression.treatment]),
        [
          ['new_checkout', 'user-1', 'on'],
          ['dark_mode', 'user-1', 'v2'],
        ],
      );
    });
    assert.deepEqual(await featureFlagsOfNextError(client), [
      { featureFlag: 'new_checkout', variant: 'on' },
      { featureFlag: 'dark_mode', variant: 'v2' },
    ]);
  });
});
