import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SplitFactory } from '@splitsoftware/splitio';
import type { SplitImpressionData, SplitImpressionListener } from '../../src/adapters/index.js';

/**
 * The real Split Node SDK in localhost mode (flags from a YAML file, no network), with `listener`
 * as its impression listener. `evaluate` runs getTreatment for each key/flag pair and resolves once
 * the SDK has handed every resulting impression to the listener (it calls listeners on a timer).
 */
export async function withLocalSplitSdk(
  yaml: string,
  listener: SplitImpressionListener,
  run: (evaluate: (pairs: readonly (readonly [key: string, flag: string])[]) => Promise<SplitImpressionData[]>) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'flagstream-split-localhost-'));
  const features = join(dir, 'features.yaml');
  writeFileSync(features, yaml);
  const seen: SplitImpressionData[] = [];
  let onSeen: () => void = () => undefined;
  const factory = SplitFactory({
    core: { authorizationKey: 'localhost' },
    features,
    debug: false,
    // The adapter's listener is what an application would pass; the wrapper only lets the test wait.
    impressionListener: {
      logImpression(data) {
        listener.logImpression(data);
        seen.push(data);
        onSeen();
      },
    },
  });
  const client = factory.client();
  try {
    await client.whenReady();
    await run(async (pairs) => {
      const target = seen.length + pairs.length;
      const arrived = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the Split SDK did not call the impression listener ${pairs.length} time(s) within 5 s`)), 5000);
        onSeen = () => {
          if (seen.length < target) return;
          clearTimeout(timer);
          resolve();
        };
      });
      for (const [key, flag] of pairs) client.getTreatment(key, flag);
      await arrived;
      return seen.slice(target - pairs.length, target);
    });
  } finally {
    await client.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
