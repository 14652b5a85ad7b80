import { afterEach, beforeEach } from 'node:test';
import nock from 'nock';
import type { AnyConnector, HttpClient } from '../../src/connectors/connector.js';
import { createDestinationGuard } from '../../src/delivery/destination-guard.js';
import { createHttpTransport } from '../../src/delivery/http-transport.js';
import { type BatchSettlement, deliverBatch } from '../../src/delivery/deliver-batch.js';
import type { Impression } from '../../src/domain/impression.js';

/** The instant every connector test encodes at. */
export const testNow = 1_718_900_000_000;

/**
 * One attempt at `items` through the real delivery core (chunking, byte splitting, classify,
 * settle) with the connector's own limits, no quick retries, and the given HTTP transport.
 */
export async function deliverThrough(
  connector: AnyConnector,
  rawSettings: Record<string, unknown>,
  items: readonly Impression[],
  transport: HttpClient,
  destinationId = `${connector.type}-test`,
): Promise<BatchSettlement> {
  const settings: unknown = connector.settingsSchema.parse(rawSettings);
  const client: unknown = connector.createClient(settings, { http: transport });
  try {
    return await deliverBatch(
      items,
      { destinationId, connector, settings, limits: connector.limits(settings), client, timeoutMs: 5000, maxConcurrentRequests: 2 },
      { now: () => testNow, quickRetries: 0 },
    );
  } finally {
    await connector.closeClient?.(client);
  }
}

/** A canonical impression numbered `n`, so ids (`imp-0001`) and keys are stable across runs. */
export function numberedImpression(n: number, overrides: Partial<Impression> = {}): Impression {
  return {
    id: `imp-${String(n).padStart(4, '0')}`,
    key: `user-${n}`,
    split: 'new_checkout',
    treatment: 'on',
    label: 'default rule',
    time: 1_718_900_000_123 + n,
    splitVersionNumber: 1_718_800_000_000,
    environmentId: 'env-prod',
    environmentName: 'Prod-Default',
    trafficTypeName: 'user',
    receptionTimestamp: 1_718_900_001_000,
    ...overrides,
  };
}

export function numberedImpressions(count: number, overrides: Partial<Impression> = {}): Impression[] {
  return Array.from({ length: count }, (_, i) => numberedImpression(i + 1, overrides));
}

/** A nock body matcher that records each body it accepts (`accept` decides which). */
export function captureBodies<T>(into: T[], accept: (body: T) => boolean = () => true): (body: unknown) => boolean {
  return (body) => {
    const sent = body as T;
    if (!accept(sent)) return false;
    into.push(sent);
    return true;
  };
}

export const sortedIds = (list: readonly { readonly id: string }[]): string[] => list.map((item) => item.id).sort();
export const rejectedIds = (settlement: BatchSettlement): string[] => settlement.rejected.map((r) => r.item.id).sort();

/**
 * For vendor tests: before each test, nock refuses real network and a fresh transport (no
 * allowlist, as in production) is made; after it, nock is cleared and the transport closed.
 */
export function useNockedTransport(): () => HttpClient {
  let transport: ReturnType<typeof createHttpTransport> | undefined;
  beforeEach(() => {
    nock.disableNetConnect();
    transport = createHttpTransport({ guard: createDestinationGuard([]), userAgent: 'test' });
  });
  afterEach(() => {
    nock.cleanAll();
    nock.enableNetConnect();
    transport?.close();
  });
  return () => {
    if (transport === undefined) throw new Error('useNockedTransport: only inside a test');
    return transport;
  };
}
