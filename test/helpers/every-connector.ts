import type { AnyConnector, EncodeResult } from '../../src/connectors/connector.js';
import { amplitudeConnector } from '../../src/connectors/amplitude/amplitude-connector.js';
import { mixpanelConnector } from '../../src/connectors/mixpanel/mixpanel-connector.js';
import { s3Connector } from '../../src/connectors/s3/s3-connector.js';
import { segmentConnector } from '../../src/connectors/segment/segment-connector.js';
import { webhookConnector } from '../../src/connectors/webhook/webhook-connector.js';
import type { Impression } from '../../src/domain/impression.js';
import { testNow } from './connector-harness.js';

/** Every built-in connector, and each output format of those that have several. */
const targets: readonly { readonly name: string; readonly connector: AnyConnector; readonly settings: Record<string, unknown> }[] = [
  { name: 'amplitude', connector: amplitudeConnector, settings: amplitudeConnector.exampleSettings },
  { name: 'mixpanel', connector: mixpanelConnector, settings: mixpanelConnector.exampleSettings },
  { name: 'segment', connector: segmentConnector, settings: segmentConnector.exampleSettings },
  { name: 's3 jsonl', connector: s3Connector, settings: { bucket: 'b', format: 'jsonl', compression: 'gzip' } },
  { name: 's3 csv', connector: s3Connector, settings: { bucket: 'b', format: 'csv', compression: 'none' } },
  { name: 's3 parquet', connector: s3Connector, settings: { bucket: 'b', format: 'parquet', compression: 'gzip' } },
  { name: 'webhook', connector: webhookConnector, settings: webhookConnector.exampleSettings },
];

/**
 * Why a connector may refuse one item by design (dead-lettered alone, the others delivered):
 * Amplitude's documented placeholder ids and Segment's 32 KB per event. Anything else an
 * encoder refuses or throws on was a value ingest should not have accepted.
 */
const expectedRejection = /placeholder value|32 KB per event/;

/** Encodes `items` with every connector; returns what went wrong, one line per problem (none expected). */
export function encodeProblems(items: readonly Impression[]): string[] {
  const problems: string[] = [];
  for (const { name, connector, settings } of targets) {
    let result: EncodeResult<unknown>;
    try {
      result = connector.encode(items, connector.settingsSchema.parse(settings), { now: testNow, destinationId: `${name}-check` });
    } catch (error) {
      problems.push(`${name}: encode threw ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
      continue;
    }
    for (const rejected of result.rejected) {
      if (!expectedRejection.test(rejected.reason)) problems.push(`${name}: rejected ${rejected.itemId}: ${rejected.code} ${rejected.reason}`);
    }
    for (const request of result.requests) {
      // Encoded bodies go over the wire as UTF-8: what does not survive the round trip was not valid Unicode.
      const body = (request.request as { body?: unknown }).body;
      if (typeof body === 'string' && Buffer.from(body, 'utf8').toString('utf8') !== body) problems.push(`${name}: body is not valid Unicode`);
    }
  }
  return problems;
}
