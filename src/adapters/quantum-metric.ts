import { type ImpressionForwardingOptions, type Provided, resolveProvided, type SplitImpression, type SplitImpressionData, type SplitImpressionListener } from './split-impression-listener.js';

/**
 * The part of Quantum Metric's page API (`window.QuantumMetricAPI`, set up by its tag) this adapter
 * uses: `sendEvent(eventId, flags, value, attributes?)`, where `flags` is 0 for a plain event (1
 * marks a conversion, 64 a cart value), and `isOn()` where the tag provides it.
 */
export interface QuantumMetricApi {
  sendEvent(eventId: number, flags: number, value: string, attributes?: Record<string, unknown>): void;
  isOn?(): boolean;
}

export interface QuantumMetricImpressionListenerOptions extends ImpressionForwardingOptions {
  /**
   * The id of the Quantum Metric event that holds Split treatments. Quantum Metric provisions it
   * (Split's own Quantum Metric script uses event 2); ask your Quantum Metric CSE for yours.
   */
  readonly eventId: number;
  /** The API, or a function giving it; `globalThis.QuantumMetricAPI` by default. */
  readonly api?: Provided<QuantumMetricApi>;
  /** The event value; `"<flag> - <treatment>"` by default, as Split's Quantum Metric script sends it. */
  readonly value?: (impression: SplitImpression) => string;
  /** Also pass an attributes object (the optional fourth argument); off by default. */
  readonly attributes?: (impression: SplitImpression) => Record<string, unknown>;
  /** Events kept while the API is not loaded (or not on) yet, then sent in order; 100 by default. */
  readonly maxPending?: number;
}

export interface QuantumMetricImpressionListener extends SplitImpressionListener {
  /** Sends the held events if the API is ready now; returns how many were sent. */
  flush(): number;
  /** Events held, waiting for the API. */
  readonly pending: number;
  /** Events dropped because more than `maxPending` were waiting. */
  readonly dropped: number;
}

interface PendingEvent {
  readonly value: string;
  readonly attributes: Record<string, unknown> | undefined;
  readonly data: SplitImpressionData;
}

/** `"<flag> - <treatment>"`: the value Split's Quantum Metric script sends for each flag. */
export function quantumMetricValue(impression: SplitImpression): string {
  return `${impression.feature} - ${impression.treatment}`;
}

function globalApi(): QuantumMetricApi | undefined {
  return (globalThis as { QuantumMetricAPI?: QuantumMetricApi }).QuantumMetricAPI;
}

/**
 * A Split SDK impression listener that sends each evaluation to Quantum Metric as an event on the
 * current session (`QuantumMetricAPI.sendEvent(eventId, 0, "<flag> - <treatment>")`). Quantum
 * Metric ties events to the session its tag records in the page; it has no public server API to
 * receive them, so there is no server-side flagstream destination for it.
 *
 * Unlike the integration Split documents (a Quantum Metric script that reads the SDK's requests
 * to `split.io/api/testImpressions/bulk`), this works when the SDK sends impressions elsewhere,
 * e.g. to flagstream, and sees each evaluation rather than each upload.
 */
export function quantumMetricImpressionListener(options: QuantumMetricImpressionListenerOptions): QuantumMetricImpressionListener {
  const maxPending = options.maxPending ?? 100;
  const queue: PendingEvent[] = [];
  let dropped = 0;

  /** The API when it is loaded and recording; a tag that throws while loading counts as not ready. */
  const readyApi = (): QuantumMetricApi | undefined => {
    try {
      const api = options.api === undefined ? globalApi() : resolveProvided(options.api);
      if (api === undefined || typeof api.sendEvent !== 'function') return undefined;
      return api.isOn === undefined || api.isOn() ? api : undefined;
    } catch {
      return undefined;
    }
  };

  const send = (api: QuantumMetricApi, event: PendingEvent): void => {
    try {
      if (event.attributes === undefined) api.sendEvent(options.eventId, 0, event.value);
      else api.sendEvent(options.eventId, 0, event.value, event.attributes);
    } catch (error) {
      options.onError?.(error, event.data);
    }
  };

  const sendHeld = (api: QuantumMetricApi): number => {
    const events = queue.splice(0, queue.length);
    for (const event of events) send(api, event);
    return events.length;
  };

  const flush = (): number => {
    const api = readyApi();
    return api === undefined ? 0 : sendHeld(api);
  };

  return {
    logImpression(data) {
      let event: PendingEvent;
      try {
        if (options.filter !== undefined && !options.filter(data)) return;
        event = { value: (options.value ?? quantumMetricValue)(data.impression), attributes: options.attributes?.(data.impression), data };
      } catch (error) {
        options.onError?.(error, data);
        return;
      }
      const api = readyApi();
      if (api !== undefined) {
        // Held events first, so Quantum Metric sees them in evaluation order.
        sendHeld(api);
        send(api, event);
      } else if (queue.length < maxPending) {
        queue.push(event);
      } else {
        dropped += 1;
      }
    },
    flush,
    get pending() {
      return queue.length;
    },
    get dropped() {
      return dropped;
    },
  };
}
