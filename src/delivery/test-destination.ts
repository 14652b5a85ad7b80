import type { AnyConnector, DeliveryOutcome } from '../connectors/connector.js';
import { type Impression, impressionId } from '../domain/impression.js';
import { createScrubber, destinationSecrets, scrubDeep } from '../observability/redact.js';
import type { RuntimeDestination } from '../runtime/config-snapshot.js';
import type { ConnectorPlatform, EncodedRequest } from '../connectors/connector.js';
import { TransportFailure } from './http-transport.js';

export interface DestinationTestReport {
  readonly destinationId: string;
  readonly type: string;
  readonly impression: Impression;
  readonly outcome: DeliveryOutcome['kind'] | 'skipped' | 'rejected-before-sending';
  readonly reason: string | undefined;
  /** The vendor's answer as the connector received it (status and body for HTTP connectors). */
  readonly response: unknown;
  readonly durationMs: number;
  /** Sent to the vendor's validation-only endpoint (the connector's `toTestRequest`): nothing was stored. */
  readonly validationOnly: boolean;
}

/** A clearly marked impression: flag `flagstream_test_event`, key `flagstream-test`, property `flagstreamTest: true`. */
export function testImpression(destination: RuntimeDestination, now: number): Impression {
  const fields = {
    key: 'flagstream-test',
    split: 'flagstream_test_event',
    treatment: 'test',
    label: 'flagstream destinations test',
    time: now,
    environmentId: destination.environmentId,
    properties: JSON.stringify({ flagstreamTest: true }),
  };
  const trafficTypeName = destination.destination.filters?.trafficTypes?.find((t) => !t.includes('*') && !t.includes('?')) ?? 'user';
  return { id: impressionId(fields), ...fields, environmentName: destination.environmentName, trafficTypeName, sdk: 'flagstream', sdkVersion: 'test', receptionTimestamp: now };
}

/**
 * `flagstream destinations test ID`: one request with one test impression, no retries, and
 * the vendor's answer as it came. Nothing is queued and nothing is dead-lettered.
 */
export async function testDestination(destination: RuntimeDestination, platform: ConnectorPlatform, now: number): Promise<DestinationTestReport> {
  const connector = destination.connector as AnyConnector;
  const impression = testImpression(destination, now);
  const base = { destinationId: destination.destination.id, type: destination.destination.type, impression };
  const encoded = connector.encode([impression], destination.settings, { now, destinationId: destination.destination.id });
  const encodedRequest = encoded.requests[0] as EncodedRequest<unknown> | undefined;
  if (encodedRequest === undefined) {
    const skipped = encoded.skipped[0];
    return { ...base, outcome: skipped ? 'skipped' : 'rejected-before-sending', reason: skipped?.reason ?? encoded.rejected[0]?.reason, response: undefined, durationMs: 0, validationOnly: false };
  }
  const request = connector.toTestRequest?.(encodedRequest, destination.settings) ?? encodedRequest;
  const client = connector.createClient(destination.settings, platform);
  // The answer is shown to the operator as it came, but never with the destination's secrets in it.
  const scrub = createScrubber(destinationSecrets(connector.secretSettings, destination.settings));
  const started = performance.now();
  try {
    let response: unknown;
    let outcome: DeliveryOutcome;
    try {
      response = scrubDeep(await connector.send(client, request.request, AbortSignal.timeout(destination.limits?.requestTimeoutMs ?? destination.destination.delivery.timeout)), scrub);
      outcome = connector.classify({ ok: true, response }, request);
    } catch (error) {
      const failure = error instanceof TransportFailure ? error : { code: 'ERROR', message: error instanceof Error ? error.message : String(error) };
      const message = scrub(failure.message);
      response = { error: `${failure.code}: ${message}` };
      outcome = connector.classify({ ok: false, error: { code: failure.code, message } }, request);
    }
    outcome = scrubDeep(outcome, scrub);
    return { ...base, outcome: outcome.kind, reason: 'reason' in outcome ? outcome.reason : undefined, response, durationMs: Math.round(performance.now() - started), validationOnly: request !== encodedRequest };
  } finally {
    await connector.closeClient?.(client);
  }
}
