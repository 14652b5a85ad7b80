// Client-side adapters: Split SDK impression listeners for vendors that take flag data only in the
// browser or the app. Dependency-free, so a browser bundle can import `flagstream/adapters` alone.
export { type BugsnagFeatureFlagClient, bugsnagImpressionListener, type BugsnagImpressionListenerOptions } from './bugsnag.js';
export {
  type QuantumMetricApi,
  quantumMetricImpressionListener,
  type QuantumMetricImpressionListener,
  type QuantumMetricImpressionListenerOptions,
  quantumMetricValue,
} from './quantum-metric.js';
export type { ImpressionForwardingOptions, Provided, SplitImpression, SplitImpressionData, SplitImpressionListener } from './split-impression-listener.js';
