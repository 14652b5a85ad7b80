import { AppError } from '../domain/errors.js';
import type { AnyConnector } from './connector.js';
import { amplitudeConnector } from './amplitude/amplitude-connector.js';
import { fullstoryConnector } from './fullstory/fullstory-connector.js';
import { googleAnalyticsConnector } from './google-analytics/google-analytics-connector.js';
import { heapConnector } from './heap/heap-connector.js';
import { mixpanelConnector } from './mixpanel/mixpanel-connector.js';
import { mparticleConnector } from './mparticle/mparticle-connector.js';
import { newRelicConnector } from './newrelic/newrelic-connector.js';
import { s3Connector } from './s3/s3-connector.js';
import { segmentConnector } from './segment/segment-connector.js';
import { webhookConnector } from './webhook/webhook-connector.js';

/** The built-in connectors, listed explicitly. Plugins are added at start (see load-plugins.ts). */
export const builtInConnectors: readonly AnyConnector[] = [
  amplitudeConnector,
  mixpanelConnector,
  s3Connector,
  segmentConnector,
  webhookConnector,
  googleAnalyticsConnector,
  heapConnector,
  newRelicConnector,
  mparticleConnector,
  fullstoryConnector,
];

export class ConnectorRegistry {
  private readonly byType = new Map<string, AnyConnector>();

  constructor(connectors: readonly AnyConnector[] = builtInConnectors) {
    for (const connector of connectors) this.register(connector);
  }

  /** Boot-time checks: a unique type, example settings that parse, positive limits. */
  register(connector: AnyConnector): void {
    if (typeof connector.type !== 'string' || !/^[a-z][a-z0-9_-]*$/.test(connector.type)) {
      throw new AppError('FLAGSTREAM_ERR_CONFIG', `connector type ${JSON.stringify(connector.type)} must be lower-case letters, digits, - or _`);
    }
    if (this.byType.has(connector.type)) throw new AppError('FLAGSTREAM_ERR_CONFIG', `two connectors are registered as type "${connector.type}"`);
    const example = connector.settingsSchema.safeParse(connector.exampleSettings);
    if (!example.success) {
      throw new AppError('FLAGSTREAM_ERR_CONFIG', `connector "${connector.type}": exampleSettings do not parse: ${example.error.issues[0]?.message ?? ''}`);
    }
    const limits = connector.limits(example.data);
    for (const [name, value] of Object.entries(limits)) {
      if (typeof value === 'number' && !(value >= 0 && Number.isFinite(value))) {
        throw new AppError('FLAGSTREAM_ERR_CONFIG', `connector "${connector.type}": limit ${name} must be a non-negative number`);
      }
    }
    this.byType.set(connector.type, connector);
  }

  get(type: string): AnyConnector | undefined {
    return this.byType.get(type);
  }

  list(): AnyConnector[] {
    return [...this.byType.values()].sort((a, b) => a.type.localeCompare(b.type));
  }
}
