import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { type QuantumMetricApi, quantumMetricImpressionListener, type SplitImpressionData } from '../../src/adapters/index.js';
import { withLocalSplitSdk } from '../helpers/split-localhost.js';

function impressionData(feature: string, treatment: string): SplitImpressionData {
  return {
    impression: { feature, keyName: 'user-1', treatment, time: 1_718_900_000_123, label: 'default rule', changeNumber: 1_718_800_000_000 },
    ip: false,
    hostname: false,
    sdkLanguageVersion: 'javascript-11.0.0',
  };
}

/** A stand-in for `window.QuantumMetricAPI` that records every call exactly as made. */
function recordingApi(on = true): QuantumMetricApi & { calls: unknown[][]; on: boolean } {
  const api = {
    calls: [] as unknown[][],
    on,
    sendEvent(...args: unknown[]) {
      api.calls.push(args);
    },
    isOn() {
      return api.on;
    },
  };
  return api;
}

const globals = globalThis as { QuantumMetricAPI?: QuantumMetricApi };

describe('quantum metric adapter', () => {
  afterEach(() => {
    delete globals.QuantumMetricAPI;
  });

  test('sends each evaluation as sendEvent(eventId, 0, "<flag> - <treatment>"), the value Split’s script sends', () => {
    const api = recordingApi();
    const listener = quantumMetricImpressionListener({ eventId: 2, api });
    listener.logImpression(impressionData('new_checkout', 'on'));
    listener.logImpression(impressionData('dark_mode', 'off'));
    assert.deepEqual(api.calls, [
      [2, 0, 'new_checkout - on'],
      [2, 0, 'dark_mode - off'],
    ]);
  });

  test('uses window.QuantumMetricAPI by default; value and attributes options', () => {
    const api = recordingApi();
    globals.QuantumMetricAPI = api;
    const listener = quantumMetricImpressionListener({
      eventId: 31,
      value: (impression) => `${impression.feature}=${impression.treatment}`,
      attributes: (impression) => ({ split: impression.feature, treatment: impression.treatment, label: impression.label }),
    });
    listener.logImpression(impressionData('new_checkout', 'on'));
    assert.deepEqual(api.calls, [[31, 0, 'new_checkout=on', { split: 'new_checkout', treatment: 'on', label: 'default rule' }]]);
  });

  test('impressions before the tag has loaded (or while it is off) are held and sent in order once it is ready', () => {
    const listener = quantumMetricImpressionListener({ eventId: 2 });
    listener.logImpression(impressionData('a', 'on'));
    listener.logImpression(impressionData('b', 'off'));
    assert.equal(listener.pending, 2);
    assert.equal(listener.flush(), 0, 'nothing to send to yet');

    const api = recordingApi(false);
    globals.QuantumMetricAPI = api;
    listener.logImpression(impressionData('c', 'on'));
    assert.equal(listener.pending, 3, 'isOn() false: still held');
    assert.deepEqual(api.calls, []);

    api.on = true;
    listener.logImpression(impressionData('d', 'on'));
    assert.deepEqual(
      api.calls.map((call) => call[2]),
      ['a - on', 'b - off', 'c - on', 'd - on'],
    );
    assert.equal(listener.pending, 0);
  });

  test('flush() sends what is held once the API is there', () => {
    let current: QuantumMetricApi | undefined = undefined;
    const listener = quantumMetricImpressionListener({ eventId: 2, api: () => current });
    listener.logImpression(impressionData('a', 'on'));
    const api = recordingApi();
    current = api;
    assert.equal(listener.flush(), 1);
    assert.deepEqual(api.calls, [[2, 0, 'a - on']]);
  });

  test('at most maxPending events are held; the rest are counted as dropped', () => {
    const listener = quantumMetricImpressionListener({ eventId: 2, api: () => undefined, maxPending: 2 });
    for (const flag of ['a', 'b', 'c', 'd']) listener.logImpression(impressionData(flag, 'on'));
    assert.equal(listener.pending, 2);
    assert.equal(listener.dropped, 2);
  });

  test('a throwing sendEvent or filter does not break the SDK: onError is told, the other events still go', () => {
    const errors: unknown[] = [];
    const calls: string[] = [];
    const listener = quantumMetricImpressionListener({
      eventId: 2,
      api: {
        sendEvent(_id, _flags, value) {
          if (value.startsWith('bad')) throw new Error('QM refused');
          calls.push(value);
        },
      },
      filter: (data) => {
        if (data.impression.feature === 'boom') throw new Error('filter bug');
        return true;
      },
      onError: (error) => errors.push(error),
    });
    assert.doesNotThrow(() => {
      listener.logImpression(impressionData('bad', 'on'));
      listener.logImpression(impressionData('boom', 'on'));
      listener.logImpression(impressionData('good', 'on'));
    });
    assert.deepEqual(calls, ['good - on']);
    assert.deepEqual(errors.map(String), ['Error: QM refused', 'Error: filter bug']);
  });

  test('end to end: the real Split SDK (localhost mode) → the adapter → the page API', async () => {
    const api = recordingApi();
    const yaml = ['- new_checkout:', '    treatment: "on"', ''].join('\n');
    await withLocalSplitSdk(yaml, quantumMetricImpressionListener({ eventId: 2, api }), async (evaluate) => {
      await evaluate([
        ['user-1', 'new_checkout'],
        ['user-2', 'new_checkout'],
      ]);
    });
    assert.deepEqual(api.calls, [
      [2, 0, 'new_checkout - on'],
      [2, 0, 'new_checkout - on'],
    ]);
  });
});
