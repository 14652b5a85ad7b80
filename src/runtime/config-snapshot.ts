import { createHash } from 'node:crypto';
import type { AnyConnector, BatchLimits } from '../connectors/connector.js';
import type { ConnectorRegistry } from '../connectors/registry.js';
import type { Destination, Environment, Flag } from '../domain/configuration.js';

/** A destination ready for the hot path: connector resolved, settings parsed, filters compiled. */
export interface RuntimeDestination {
  readonly destination: Destination;
  readonly environmentId: string;
  /** The environment's name (its id when it has none), as impressions carry it. */
  readonly environmentName: string;
  readonly connector: AnyConnector | undefined;
  /** Parsed settings, or undefined with `settingsError` when they no longer parse. */
  readonly settings: unknown;
  readonly settingsError: string | undefined;
  readonly limits: BatchLimits | undefined;
  /** Changes whenever type or settings change: connector clients are rebuilt then. */
  readonly settingsFingerprint: string;
  matches(flag: string, trafficType: string | undefined): boolean;
}

export interface RuntimeEnvironment {
  readonly environment: Environment;
  readonly flags: ReadonlyMap<string, Flag>;
  readonly destinations: readonly RuntimeDestination[];
}

/** An immutable view of the whole configuration, rebuilt on every change. */
export interface ConfigSnapshot {
  readonly version: number;
  readonly environments: ReadonlyMap<string, RuntimeEnvironment>;
  readonly destinations: ReadonlyMap<string, RuntimeDestination>;
  environmentBySdkKey(key: string): RuntimeEnvironment | undefined;
  environmentByWebhookToken(token: string): RuntimeEnvironment | undefined;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

function compileFilter(patterns: readonly string[] | undefined): (value: string | undefined) => boolean {
  if (patterns === undefined || patterns.length === 0 || patterns.includes('*')) return () => true;
  const regexps = patterns.map(globToRegExp);
  return (value) => value !== undefined && regexps.some((r) => r.test(value));
}

function runtimeDestination(destination: Destination, environmentId: string, environmentName: string, registry: ConnectorRegistry): RuntimeDestination {
  const connector = registry.get(destination.type);
  const parsed = connector?.settingsSchema.safeParse(destination.settings);
  const settingsError = connector === undefined ? `unknown connector type "${destination.type}"` : parsed?.success ? undefined : (parsed?.error.issues[0]?.message ?? 'invalid settings');
  const settings = parsed?.success ? parsed.data : undefined;
  const flagMatches = compileFilter(destination.filters?.flags);
  const trafficTypeMatches = compileFilter(destination.filters?.trafficTypes);
  return {
    destination,
    environmentId,
    environmentName,
    connector,
    settings,
    settingsError,
    limits: connector !== undefined && settings !== undefined ? connector.limits(settings) : undefined,
    settingsFingerprint: sha256(JSON.stringify([destination.type, destination.settings])),
    matches: (flag, trafficType) => flagMatches(flag) && trafficTypeMatches(trafficType),
  };
}

export function buildConfigSnapshot(environments: readonly Environment[], registry: ConnectorRegistry, version: number): ConfigSnapshot {
  const byId = new Map<string, RuntimeEnvironment>();
  const bySdkKey = new Map<string, RuntimeEnvironment>();
  const byWebhookToken = new Map<string, RuntimeEnvironment>();
  const destinations = new Map<string, RuntimeDestination>();
  for (const environment of environments) {
    const runtime: RuntimeEnvironment = {
      environment,
      flags: new Map(environment.flags.map((flag) => [flag.name, flag])),
      destinations: environment.destinations.map((d) => runtimeDestination(d, environment.id, environment.name ?? environment.id, registry)),
    };
    byId.set(environment.id, runtime);
    // Keys are looked up by hash so the map holds no secret worth dumping.
    for (const key of environment.sdkKeys) bySdkKey.set(sha256(key), runtime);
    if (environment.webhookToken !== undefined) byWebhookToken.set(sha256(environment.webhookToken), runtime);
    for (const destination of runtime.destinations) destinations.set(destination.destination.id, destination);
  }
  return {
    version,
    environments: byId,
    destinations,
    environmentBySdkKey: (key) => bySdkKey.get(sha256(key)),
    environmentByWebhookToken: (token) => byWebhookToken.get(sha256(token)),
  };
}
