/**
 * What a Split (Harness FME) SDK hands its `impressionListener.logImpression(data)`, as the
 * JavaScript SDKs define it (`SplitIO.ImpressionData` in @splitsoftware/splitio-commons). Written
 * out here, structurally, so the adapters depend on no SDK package and run in a browser bundle.
 */
export interface SplitImpression {
  /** Feature flag name. */
  readonly feature: string;
  /** The key that was evaluated. */
  readonly keyName: string;
  readonly treatment: string;
  /** Evaluation time, epoch ms. */
  readonly time: number;
  readonly bucketingKey?: string;
  /** Targeting rule label. */
  readonly label?: string;
  /** Flag change number (absent in some SDK modes, e.g. localhost). */
  readonly changeNumber?: number;
  /** Previous time this impression was seen (OPTIMIZED mode). */
  readonly pt?: number;
  /** Impression properties as a JSON string. */
  readonly properties?: string;
}

export interface SplitImpressionData {
  readonly impression: SplitImpression;
  readonly attributes?: Readonly<Record<string, unknown>>;
  readonly ip: string | false;
  readonly hostname: string | false;
  /** `javascript-11.0.0`, `nodejs-11.11.2`, … */
  readonly sdkLanguageVersion: string;
}

/** The SDK's `impressionListener` setting: called once per evaluation, off the evaluation's call stack. */
export interface SplitImpressionListener {
  logImpression(data: SplitImpressionData): void;
}

/** Options every adapter shares. */
export interface ImpressionForwardingOptions {
  /** Which impressions to forward; all by default. The listener also sees flags whose impression tracking is off. */
  readonly filter?: (data: SplitImpressionData) => boolean;
  /** Told when the vendor's client throws; the Split SDK would only log it. */
  readonly onError?: (error: unknown, data: SplitImpressionData) => void;
}

/** A value, or a function giving the current one (a request-scoped client, a global set later). */
export type Provided<T> = T | (() => T | undefined);

export function resolveProvided<T extends object>(provided: Provided<T>): T | undefined {
  return typeof provided === 'function' ? (provided as () => T | undefined)() : provided;
}
