import { isDeepStrictEqual } from 'node:util';
import { stringify } from 'yaml';
import type { ConnectorRegistry } from '../connectors/registry.js';
import type { DestinationGuard } from '../delivery/destination-guard.js';
import { type Configuration, ConfigurationSchema, type Destination, type Environment, EnvironmentSchema, FlagSchema } from '../domain/configuration.js';
import { AppError, problemsFromZod, validationError } from '../domain/errors.js';
import { restoreRedacted } from '../observability/redact.js';
import { type ConfigStore, redactDestination, redactEnvironment } from '../stores/config-store.js';
import { parseDestination, parseEnvironment, validateConfiguration } from './validate-configuration.js';

export interface ConfigChange {
  readonly action: 'create' | 'update' | 'delete';
  readonly kind: 'environment' | 'flag' | 'destination' | 'plugin';
  readonly environmentId: string;
  readonly id: string;
}

export interface ApplyOptions {
  /** Remove environments, flags and destinations the file no longer names. */
  readonly prune?: boolean;
  /** Compute and return the changes without writing them. */
  readonly dryRun?: boolean;
}

/**
 * Use cases over the stored configuration, shared by the admin API and the CLI.
 * `destinationGuard` (from FLAGSTREAM_DESTINATION_ALLOWLIST) refuses destinations at configuration time.
 */
export function createConfigService(deps: { store: ConfigStore; registry: ConnectorRegistry; destinationGuard: DestinationGuard }) {
  const { store, registry, destinationGuard } = deps;

  /** Secrets that come back as `[redacted]` (an edited export, a PUT of a GET) keep their stored value. */
  const restoreSecrets = (next: Environment, stored: Environment | undefined): Environment => {
    if (stored === undefined) return next;
    const storedDestinations = new Map(stored.destinations.map((d) => [d.id, d]));
    return {
      ...next,
      sdkKeys: restoreRedacted(next.sdkKeys, stored.sdkKeys) as string[],
      ...(next.webhookToken === undefined ? {} : { webhookToken: restoreRedacted(next.webhookToken, stored.webhookToken) as string }),
      destinations: next.destinations.map((d) => restoreDestinationSecrets(d, storedDestinations.get(d.id))),
    };
  };

  const restoreDestinationSecrets = (next: Destination, stored: Destination | undefined): Destination =>
    stored === undefined ? next : { ...next, settings: restoreRedacted(next.settings, stored.settings) as Record<string, unknown> };

  const assertDestinationIdsUnique = async (environment: Environment): Promise<void> => {
    const others = (await store.listEnvironments()).filter((e) => e.id !== environment.id);
    environment.destinations.forEach((destination, index) => {
      const owner = others.find((e) => e.destinations.some((d) => d.id === destination.id));
      if (owner !== undefined) {
        throw validationError([{ field: `destinations[${index}].id`, message: `destination id "${destination.id}" is already used in environment "${owner.id}"` }]);
      }
    });
  };

  const findDestination = async (destinationId: string): Promise<{ environment: Environment; destination: Destination }> => {
    for (const environment of await store.listEnvironments()) {
      const destination = environment.destinations.find((d) => d.id === destinationId);
      if (destination !== undefined) return { environment, destination };
    }
    throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no destination "${destinationId}"`, { field: 'destinationId' });
  };

  const requireEnvironment = async (environmentId: string): Promise<Environment> => {
    const environment = await store.getEnvironment(environmentId);
    if (environment === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no environment "${environmentId}"`, { field: 'environmentId' });
    return environment;
  };

  const changeEnvironment = async (environmentId: string, change: (current: Environment) => Environment): Promise<Environment> => {
    const updated = await store.updateEnvironment(environmentId, (current) => {
      if (current === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no environment "${environmentId}"`, { field: 'environmentId' });
      return change(current);
    });
    return updated as Environment;
  };

  return {
    /** Validates the whole file first (every error with its path), then upserts; idempotent. */
    async apply(raw: unknown, options: ApplyOptions = {}): Promise<ConfigChange[]> {
      const shape = ConfigurationSchema.safeParse(raw);
      if (!shape.success) throw validationError(problemsFromZod(shape.error.issues));
      const storedList = await store.listEnvironments();
      const stored = new Map(storedList.map((e) => [e.id, e]));
      const merged = shape.data.environments.map((fileEnv) => {
        const current = stored.get(fileEnv.id);
        const restored = restoreSecrets(fileEnv, current);
        if (options.prune || current === undefined) return restored;
        // Without --prune, flags and destinations the file does not name are kept.
        const flagNames = new Set(restored.flags.map((f) => f.name));
        const destinationIds = new Set(restored.destinations.map((d) => d.id));
        return {
          ...restored,
          flags: [...restored.flags, ...current.flags.filter((f) => !flagNames.has(f.name))],
          destinations: [...restored.destinations, ...current.destinations.filter((d) => !destinationIds.has(d.id))],
        };
      });
      const fileIds = new Set(merged.map((e) => e.id));
      const kept = options.prune ? [] : storedList.filter((e) => !fileIds.has(e.id));
      // Validate what the store will hold, but report paths as they are in the file.
      const configuration: Configuration = validateConfiguration({ plugins: shape.data.plugins, environments: [...merged, ...kept] }, registry, destinationGuard);
      const next = configuration.environments.slice(0, merged.length);
      const changes = diffEnvironments(storedList, next, options.prune === true);
      const storedPlugins = await store.listPlugins();
      const plugins = options.prune ? [...new Set(shape.data.plugins)] : [...new Set([...storedPlugins, ...shape.data.plugins])];
      for (const plugin of plugins) if (!storedPlugins.includes(plugin)) changes.push({ action: 'create', kind: 'plugin', environmentId: '', id: plugin });
      for (const plugin of storedPlugins) if (!plugins.includes(plugin)) changes.push({ action: 'delete', kind: 'plugin', environmentId: '', id: plugin });
      if (options.dryRun) return changes;
      if (!isDeepStrictEqual(storedPlugins, plugins)) await store.setPlugins(plugins);
      for (const environment of next) {
        if (!isDeepStrictEqual(stored.get(environment.id), environment)) await store.updateEnvironment(environment.id, () => environment);
      }
      if (options.prune) for (const environment of storedList) if (!fileIds.has(environment.id)) await store.updateEnvironment(environment.id, () => undefined);
      return changes;
    },

    async exportYaml(): Promise<string> {
      const { plugins, environments } = await this.exportConfiguration();
      return stringify(plugins.length > 0 ? { plugins, environments } : { environments });
    },

    async exportConfiguration(): Promise<{ plugins: string[]; environments: Environment[] }> {
      return { plugins: await store.listPlugins(), environments: (await store.listEnvironments()).map((e) => redactEnvironment(e, registry)) };
    },

    async listEnvironments(): Promise<Environment[]> {
      return (await store.listEnvironments()).map((e) => redactEnvironment(e, registry));
    },

    async getEnvironment(environmentId: string): Promise<Environment> {
      return redactEnvironment(await requireEnvironment(environmentId), registry);
    },

    /** Creates or replaces an environment; flags and destinations are kept when the body leaves them out. */
    async putEnvironment(environmentId: string, body: Record<string, unknown>): Promise<{ environment: Environment; created: boolean }> {
      const stored = await store.getEnvironment(environmentId);
      const draft = EnvironmentSchema.safeParse({
        ...body,
        id: environmentId,
        flags: body.flags ?? stored?.flags ?? [],
        destinations: body.destinations ?? stored?.destinations ?? [],
      });
      if (!draft.success) throw validationError(problemsFromZod(draft.error.issues));
      const environment = parseEnvironment(restoreSecrets(draft.data, stored), registry, '', destinationGuard);
      await assertDestinationIdsUnique(environment);
      await store.updateEnvironment(environmentId, () => environment);
      return { environment: redactEnvironment(environment, registry), created: stored === undefined };
    },

    async deleteEnvironment(environmentId: string): Promise<void> {
      await requireEnvironment(environmentId);
      await store.updateEnvironment(environmentId, () => undefined);
    },

    async putFlag(environmentId: string, name: string, body: Record<string, unknown>, merge: boolean) {
      let result: Environment['flags'][number] | undefined;
      let created = false;
      await changeEnvironment(environmentId, (current) => {
        const existing = current.flags.find((f) => f.name === name);
        created = existing === undefined;
        const parsed = FlagSchema.safeParse({ ...(merge ? existing : {}), ...body, name });
        if (!parsed.success) throw validationError(problemsFromZod(parsed.error.issues));
        result = parsed.data;
        const flags = existing === undefined ? [...current.flags, parsed.data] : current.flags.map((f) => (f.name === name ? parsed.data : f));
        return { ...current, flags };
      });
      return { flag: result as NonNullable<typeof result>, created };
    },

    async deleteFlag(environmentId: string, name: string): Promise<void> {
      await changeEnvironment(environmentId, (current) => {
        if (!current.flags.some((f) => f.name === name)) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no flag "${name}" in environment "${environmentId}"`, { field: 'name' });
        return { ...current, flags: current.flags.filter((f) => f.name !== name) };
      });
    },

    async listDestinations(environmentId: string): Promise<Destination[]> {
      return (await requireEnvironment(environmentId)).destinations.map((d) => redactDestination(d, registry));
    },

    async getDestination(destinationId: string): Promise<Destination & { environmentId: string }> {
      const { environment, destination } = await findDestination(destinationId);
      return { ...redactDestination(destination, registry), environmentId: environment.id };
    },

    async createDestination(environmentId: string, body: unknown): Promise<Destination> {
      const destination = parseDestination(body, registry, '', destinationGuard);
      const owner = (await store.listEnvironments()).find((e) => e.destinations.some((d) => d.id === destination.id));
      if (owner !== undefined) throw new AppError('FLAGSTREAM_ERR_CONFLICT', `destination "${destination.id}" already exists (environment "${owner.id}")`, { field: 'id' });
      await changeEnvironment(environmentId, (current) => ({ ...current, destinations: [...current.destinations, destination] }));
      return redactDestination(destination, registry);
    },

    /** PUT replaces, PATCH merges (settings merged key by key); `[redacted]` keeps stored secrets. */
    async updateDestination(destinationId: string, body: Record<string, unknown>, merge: boolean): Promise<Destination> {
      const { environment } = await findDestination(destinationId);
      let updated: Destination | undefined;
      await changeEnvironment(environment.id, (current) => {
        const existing = current.destinations.find((d) => d.id === destinationId);
        if (existing === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no destination "${destinationId}"`);
        const draft = merge
          ? { ...existing, ...body, id: destinationId, settings: { ...existing.settings, ...((body.settings as Record<string, unknown> | undefined) ?? {}) } }
          : { ...body, id: destinationId };
        const restored = { ...draft, settings: restoreRedacted((draft as { settings?: unknown }).settings ?? {}, existing.settings) };
        updated = parseDestination(restored, registry, '', destinationGuard);
        return { ...current, destinations: current.destinations.map((d) => (d.id === destinationId ? (updated as Destination) : d)) };
      });
      return redactDestination(updated as Destination, registry);
    },

    async deleteDestination(destinationId: string): Promise<void> {
      const { environment } = await findDestination(destinationId);
      await changeEnvironment(environment.id, (current) => ({ ...current, destinations: current.destinations.filter((d) => d.id !== destinationId) }));
    },

    async setDestinationEnabled(destinationId: string, enabled: boolean): Promise<Destination> {
      return this.updateDestination(destinationId, { enabled }, true);
    },
  };
}
export type ConfigService = ReturnType<typeof createConfigService>;

function diffEnvironments(before: readonly Environment[], after: readonly Environment[], prune: boolean): ConfigChange[] {
  const changes: ConfigChange[] = [];
  const beforeById = new Map(before.map((e) => [e.id, e]));
  for (const next of after) {
    const previous = beforeById.get(next.id);
    if (previous === undefined) {
      changes.push({ action: 'create', kind: 'environment', environmentId: next.id, id: next.id });
      for (const f of next.flags) changes.push({ action: 'create', kind: 'flag', environmentId: next.id, id: f.name });
      for (const d of next.destinations) changes.push({ action: 'create', kind: 'destination', environmentId: next.id, id: d.id });
      continue;
    }
    const { flags: nf, destinations: nd, ...nAttrs } = next;
    const { flags: pf, destinations: pd, ...pAttrs } = previous;
    if (!isDeepStrictEqual(nAttrs, pAttrs)) changes.push({ action: 'update', kind: 'environment', environmentId: next.id, id: next.id });
    changes.push(...diffList('flag', next.id, pf, nf, (f) => f.name), ...diffList('destination', next.id, pd, nd, (d) => d.id));
  }
  if (prune) {
    const afterIds = new Set(after.map((e) => e.id));
    for (const previous of before) if (!afterIds.has(previous.id)) changes.push({ action: 'delete', kind: 'environment', environmentId: previous.id, id: previous.id });
  }
  return changes;
}

function diffList<T>(kind: 'flag' | 'destination', environmentId: string, before: readonly T[], after: readonly T[], idOf: (t: T) => string): ConfigChange[] {
  const changes: ConfigChange[] = [];
  const beforeById = new Map(before.map((t) => [idOf(t), t]));
  const afterIds = new Set(after.map(idOf));
  for (const item of after) {
    const previous = beforeById.get(idOf(item));
    if (previous === undefined) changes.push({ action: 'create', kind, environmentId, id: idOf(item) });
    else if (!isDeepStrictEqual(previous, item)) changes.push({ action: 'update', kind, environmentId, id: idOf(item) });
  }
  for (const item of before) if (!afterIds.has(idOf(item))) changes.push({ action: 'delete', kind, environmentId, id: idOf(item) });
  return changes;
}
