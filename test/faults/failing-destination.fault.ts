import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ReceiverMode } from '../helpers/counting-receiver.js';
import { pollUntil } from '../helpers/processes.js';
import { adminToken, type Fault, setUpFault } from './harness.js';

/**
 * Scenario 4: one destination hangs, then resets connections, then answers 5xx, then is slow,
 * for tens of seconds in all (minutes of real time with the compressed retry schedule), then
 * recovers. A healthy destination of the same environment keeps receiving throughout.
 */
async function healthOf(fault: Fault, destinationId: string): Promise<{ state: string }> {
  const [url] = fault.apiUrls();
  const response = await fetch(`${url}/admin/v1/destinations/${destinationId}/health`, { headers: { authorization: `Bearer ${adminToken}` }, signal: AbortSignal.timeout(5000) });
  return (await response.json()) as { state: string };
}

describe('a destination hanging, resetting, failing, slow, then recovering', () => {
  let fault: Fault;
  before(async () => {
    fault = await setUpFault('failing-destination', { destinations: [{ id: 'flaky' }, { id: 'steady' }] });
  });
  after(() => fault.teardown());

  test('the healthy destination keeps receiving during the outage; everything is delivered after it', { timeout: 180_000 }, async () => {
    const flaky = fault.receiver('flaky');
    const steady = fault.receiver('steady');
    await fault.start('serve', 'all');
    const phases: ReceiverMode[] = ['hang', 'reset', '5xx', 'slow'];
    const timings: string[] = [];
    for (const mode of phases) {
      flaky.setMode(mode, 1000);
      const startedAt = Date.now();
      const before = flaky.requestsByMode[mode];
      const load = fault.load(mode);
      load.start({ accepted: 10_000, concurrency: 2, pauseMs: 100 });
      if (mode === 'slow') {
        await flaky.waitFor(() => flaky.requestsByMode[mode] - before >= 16, 60_000, '16 slow requests');
      } else {
        // The outage lasts until it trips the circuit breaker and the destination has been probed a few times since.
        await pollUntil(async () => (await healthOf(fault, 'flaky')).state === 'open', { timeoutMs: 60_000, what: `flaky's circuit to open while "${mode}"`, everyMs: 200 });
        const openedAt = flaky.requestsByMode[mode];
        await flaky.waitFor(() => flaky.requestsByMode[mode] >= openedAt + 8, 60_000, `probes of flaky while "${mode}"`);
      }
      await load.stop();
      const keys = load.accepted.flatMap((r) => r.trackedKeys);
      // Isolation: the healthy destination has this phase's impressions while the other one is still failing.
      await steady.waitFor(() => keys.every((key) => steady.idOfKey.has(key)), 20_000, `this phase's ${keys.length} impressions while flaky is "${mode}"`);
      if (mode !== 'slow') assert.equal(keys.filter((key) => flaky.idOfKey.has(key)).length, 0, `nothing of the "${mode}" phase reached flaky`);
      timings.push(`${mode} ${Date.now() - startedAt} ms`);
    }
    flaky.setMode('ok');
    await pollUntil(async () => (await healthOf(fault, 'flaky')).state === 'healthy', { timeoutMs: 30_000, what: "flaky's circuit to close by itself", everyMs: 200 });
    console.log(`[faults] failing-destination phases: ${timings.join(', ')}; flaky requests ${JSON.stringify(flaky.requestsByMode)}`);
    await fault.settle({ timeoutMs: 90_000 });
  });
});
