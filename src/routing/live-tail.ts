import type { Impression } from '../domain/impression.js';

/** What a live-tail viewer wants to see; an absent field matches everything. */
export interface TailFilter {
  readonly flag?: string | undefined;
  readonly treatment?: string | undefined;
  readonly key?: string | undefined;
}

/** One impression as routing decided it, as the live tail shows it. */
export interface TailEvent {
  readonly environmentId: string;
  /** When routing decided, ISO 8601. */
  readonly routedAt: string;
  readonly outcome: 'tracked' | 'dropped';
  /** Why it was dropped (`tracking_off`, `unknown_flag`); absent when tracked. */
  readonly reason?: string;
  /** Destinations it was handed to; empty when dropped or when no destination's filters matched. */
  readonly destinations: readonly string[];
  /** The impression as the destinations get it (labels already removed where disabled). */
  readonly impression: Impression;
}

/** One pub/sub message: the watched part of one routing job. */
export interface TailMessage {
  readonly environmentId: string;
  readonly events: readonly TailEvent[];
  /** Matching impressions left out to keep the message bounded. */
  readonly omitted: number;
}

/** A routing job's message carries at most this many impressions and about this many bytes. */
export const tailMessageMaxEvents = 1000;
export const tailMessageMaxBytes = 1024 * 1024;

export function matchesTail(filter: TailFilter, impression: Pick<Impression, 'split' | 'treatment' | 'key'>): boolean {
  return (
    (filter.flag === undefined || filter.flag === impression.split) &&
    (filter.treatment === undefined || filter.treatment === impression.treatment) &&
    (filter.key === undefined || filter.key === impression.key)
  );
}

export type RoutingDecision = { readonly dropped: string } | { readonly destinations: readonly string[] };

/**
 * Collects, while a routing job runs, the impressions some viewer wants, as already-encoded
 * JSON (so the message stays within its byte budget), and counts what it leaves out.
 */
export class TailCollector {
  private readonly encoded: string[] = [];
  private bytes = 0;
  private omitted = 0;

  constructor(
    private readonly environmentId: string,
    private readonly filters: readonly TailFilter[],
    private readonly routedAt: string,
  ) {}

  readonly observe = (impression: Impression, decision: RoutingDecision): void => {
    if (!this.filters.some((filter) => matchesTail(filter, impression))) return;
    if (this.encoded.length >= tailMessageMaxEvents || this.bytes >= tailMessageMaxBytes) {
      this.omitted += 1;
      return;
    }
    const event: TailEvent =
      'dropped' in decision
        ? { environmentId: this.environmentId, routedAt: this.routedAt, outcome: 'dropped', reason: decision.dropped, destinations: [], impression }
        : { environmentId: this.environmentId, routedAt: this.routedAt, outcome: 'tracked', destinations: decision.destinations, impression };
    const json = JSON.stringify(event);
    this.encoded.push(json);
    this.bytes += json.length;
  };

  get isEmpty(): boolean {
    return this.encoded.length === 0 && this.omitted === 0;
  }

  /** The TailMessage, serialised. */
  message(): string {
    return `{"environmentId":${JSON.stringify(this.environmentId)},"omitted":${this.omitted},"events":[${this.encoded.join(',')}]}`;
  }
}
