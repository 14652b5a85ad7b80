import { type ImpressionForwardingOptions, type Provided, resolveProvided, type SplitImpression, type SplitImpressionListener } from './split-impression-listener.js';

/**
 * The part of a BugSnag notifier this adapter uses (`Client` of @bugsnag/js, @bugsnag/node,
 * @bugsnag/browser, React Native, Expo, Electron): `addFeatureFlag(name, variant?)`.
 */
export interface BugsnagFeatureFlagClient {
  addFeatureFlag(name: string, variant?: string | null): void;
}

export interface BugsnagImpressionListenerOptions extends ImpressionForwardingOptions {
  /**
   * The notifier (`Bugsnag`, or a client from `Bugsnag.createClient`), or a function giving the
   * one to use now. Nothing is sent while it gives undefined.
   */
  readonly client: Provided<BugsnagFeatureFlagClient>;
  /** The flag name BugSnag shows; the Split flag name by default. */
  readonly flagName?: (impression: SplitImpression) => string;
}

/**
 * A Split SDK impression listener that declares every evaluated flag to BugSnag as a feature flag,
 * `addFeatureFlag(<flag>, <treatment>)`, so errors reported afterwards carry the treatments the
 * user had. A later treatment of the same flag replaces the earlier one (BugSnag keeps one variant
 * per flag name). BugSnag takes this only in the notifier: its server APIs accept error reports,
 * not flag exposures, so there is no server-side flagstream destination for it.
 */
export function bugsnagImpressionListener(options: BugsnagImpressionListenerOptions): SplitImpressionListener {
  return {
    logImpression(data) {
      try {
        if (options.filter !== undefined && !options.filter(data)) return;
        const client = resolveProvided(options.client);
        if (client === undefined) return;
        const name = options.flagName?.(data.impression) ?? data.impression.feature;
        client.addFeatureFlag(name, data.impression.treatment);
      } catch (error) {
        options.onError?.(error, data);
      }
    },
  };
}
