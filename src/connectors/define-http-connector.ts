import { classifyHttpResult } from './http-classification.js';
import type { Connector, DeliveryOutcome, EncodedRequest, HttpClient, HttpRequestSpec, HttpResponse, SendResult } from './connector.js';

export interface HttpConnectorDefinition<Settings> extends Omit<Connector<Settings>, 'createClient' | 'send' | 'classify'> {
  /**
   * Vendor-specific meaning of an answer (per-record failures, throttling bodies). Return
   * undefined to fall back to the default HTTP table (see connectors/http-classification.ts).
   */
  classify?(result: SendResult<HttpResponse>, sent: EncodedRequest<HttpRequestSpec>): DeliveryOutcome | undefined;
}

/** A connector that speaks HTTP through the core's transport: define encode, and classify only what differs. */
export function defineHttpConnector<Settings>(definition: HttpConnectorDefinition<Settings>): Connector<Settings> {
  const vendorClassify = definition.classify;
  return {
    ...definition,
    createClient: (_settings, platform) => platform.http,
    send: (client: HttpClient, request: HttpRequestSpec, signal: AbortSignal) => client.request(request, signal),
    classify: (result, sent) => vendorClassify?.(result, sent) ?? classifyHttpResult(result),
  };
}
