import { z } from 'zod';
import type { AnyConnector, BatchLimits } from './connector.js';

export interface ConnectorDescription {
  readonly type: string;
  readonly displayName: string;
  readonly description: string;
  /** JSON Schema (draft 2020-12) of the settings as users write them. */
  readonly settings: unknown;
  readonly secretSettings: readonly string[];
  /** Limits with the example settings (some depend on settings, e.g. region or batch size). */
  readonly limits: BatchLimits;
  readonly regions: Readonly<Record<string, string>>;
  readonly exampleSettings: Readonly<Record<string, unknown>>;
}

/** What `flagstream connectors` and the admin API show: enough to configure one without reading code. */
export function describeConnector(connector: AnyConnector): ConnectorDescription {
  let settings: unknown;
  try {
    settings = z.toJSONSchema(connector.settingsSchema, { io: 'input', unrepresentable: 'any' });
  } catch {
    settings = { description: 'settings schema cannot be expressed as JSON Schema' };
  }
  return {
    type: connector.type,
    displayName: connector.displayName,
    description: connector.description,
    settings,
    secretSettings: connector.secretSettings,
    limits: connector.limits(connector.settingsSchema.parse(connector.exampleSettings)),
    regions: connector.regions ?? {},
    exampleSettings: connector.exampleSettings,
  };
}
