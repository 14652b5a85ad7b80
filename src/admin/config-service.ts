import { isDeepStrictEqual } from 'node:util';
import { stringify } from 'yaml';
import type { ConnectorRegistry } from '../connectors/registry.js';
import type { DestinationGuard } from '../delivery/destination-guard.js';
import type { Destination, DestinationInput, Environment, EnvironmentInput, Flag } from '../domain/configuration.js';
import { formatDuration } from '../domain/duration.js';
import { AppError, type FieldProblem, validationError } from '../domain/errors.js';
import { REDACTED } from '../observability/redact.js';
import { type ConfigStore, redactDestination, redactEnvironment } from '../stores/config-store.js';
import { closestName } from './unknown-keys.js';
import {
  assertShallow,
  checkConfiguration,
  checkDestination,
  checkEnvironment,
  checkFlag,
  type EnvironmentView,
  ruleProblems,
  sortedProblems,
  unresolvedDestinationSecrets,
  unresolvedSecretProblems,
  viewOf,
} from './validate-configuration.js';

/** One field an update changes; secrets as `[redacted]`, durations in the human form. */
export interface FieldChange {
  readonly path: string;
  readonly before: unknown;
  readonly after: unknown;
  readonly secret: boolean;
}

export interface ConfigChange {
  readonly action: 'create' | 'update' | 'delete';
  readonly kind: 'environment' | 'flag' | 'destination' | 'plugin';
  readonly environmentId: string;
  readonly id: string;
  /** For updates: what changes, field by field. */
  readonly fields?: readonly FieldChange[];
}

export interface ApplyOptions {
  /** Remove environments, flags and destinations the file no longer names. */
  readonly prune?: boolean;
  /** Compute and return the changes without writing them. */
  readonly dryRun?: boolean;
  /** Problems found while reading the input (an unset `${VAR}`), reported with the others. */
  readonly inputProblems?: readonly FieldProblem[];
  /** Write only when nothing is stored yet (seeding a fresh deployment); otherwise change nothing. */
  readonly ifEmpty?: boolean;
  /** What the user confirmed deleting (`deletionKey`s): anything more is refused, as the configuration changed meanwhile. */
  readonly allowedDeletions?: readonly string[];
}

export function deletionKey(change: Pick<ConfigChange, 'kind' | 'environmentId' | 'id'>): string {
  return `${change.kind}:${change.environmentId}/${change.id}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** `[redacted]` sent back keeps the stored value at the same place; with nothing stored there it stays (and is refused). */
function keepStored(incoming: unknown, stored: unknown): unknown {
  if (incoming === REDACTED) return stored === undefined ? incoming : stored;
  if (Array.isArray(incoming)) return incoming.map((item, index) => keepStored(item, Array.isArray(stored) ? stored[index] : undefined));
  if (isRecord(incoming)) return Object.fromEntries(Object.entries(incoming).map(([key, item]) => [key, keepStored(item, isRecord(stored) ? stored[key] : undefined)]));
  return incoming;
}

/** An environment as given, with `[redacted]` secrets replaced by the stored ones (destinations matched by id). */
function withStoredSecrets(raw: unknown, stored: Environment | undefined): unknown {
  if (!isRecord(raw) || stored === undefined) return raw;
  const storedDestinations = new Map(stored.destinations.map((d) => [d.id, d]));
  const restored: Record<string, unknown> = { ...raw };
  if ('sdkKeys' in raw) restored.sdkKeys = keepStored(raw.sdkKeys, stored.sdkKeys);
  if ('webhookToken' in raw) restored.webhookToken = keepStored(raw.webhookToken, stored.webhookToken);
  if (Array.isArray(raw.destinations)) restored.destinations = raw.destinations.map((destination) => withStoredDestinationSecrets(destination, storedDestinations));
  return restored;
}

function withStoredDestinationSecrets(raw: unknown, stored: ReadonlyMap<string, Destination>): unknown {
  if (!isRecord(raw) || typeof raw.id !== 'string' || !isRecord(raw.settings)) return raw;
  const previous = stored.get(raw.id);
  return previous === undefined ? raw : { ...raw, settings: keepStored(raw.settings, previous.settings) };
}

/** Durations in the form people write them (`5s`, `1h30m`), as `export` and the admin API show them. */
function humanDurations(destination: Destination): DestinationInput {
  const { delivery } = destination;
  return {
    ...destination,
    delivery: { ...delivery, retrySchedule: delivery.retrySchedule.map(formatDuration), timeout: formatDuration(delivery.timeout), circuitBreakerCooldown: formatDuration(delivery.circuitBreakerCooldown) },
  };
}

function notFound(what: string, name: string, known: readonly string[], field: string, where = ''): AppError {
  const suggestion = closestName(name, known);
  return new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no ${what} "${name}"${where}${suggestion === undefined ? '' : `; did you mean ${suggestion}?`}`, { field });
}

/** Use cases over the stored configuration, shared by the admin API and the CLI. */
export function createConfigService(deps: { store: ConfigStore; registry: ConnectorRegistry; destinationGuard: DestinationGuard }) {
  // destinationGuard (from FLAGSTREAM_DESTINATION_ALLOWLIST) refuses destinations at configuration time.
  const { store, registry, destinationGuard } = deps;

  const presentDestination = (destination: Destination): DestinationInput => humanDurations(redactDestination(destination, registry));
  const presentEnvironment = (environment: Environment): EnvironmentInput => {
    const redacted = redactEnvironment(environment, registry);
    return { ...redacted, destinations: redacted.destinations.map(humanDurations) };
  };

  const findDestination = async (destinationId: string): Promise<{ environment: Environment; destination: Destination }> => {
    const environments = await store.listEnvironments();
    for (const environment of environments) {
      const destination = environment.destinations.find((d) => d.id === destinationId);
      if (destination !== undefined) return { environment, destination };
    }
    throw notFound('destination', destinationId, environments.flatMap((e) => e.destinations.map((d) => d.id)), 'destinationId');
  };

  const requireEnvironment = async (environmentId: string): Promise<Environment> => {
    const environment = await store.getEnvironment(environmentId);
    if (environment === undefined) throw notFound('environment', environmentId, (await store.listEnvironments()).map((e) => e.id), 'environmentId');
    return environment;
  };

  const changeEnvironment = async (environmentId: string, change: (current: Environment) => Environment): Promise<Environment> => {
    if (!(await store.hasEnvironment(environmentId))) await requireEnvironment(environmentId);
    const updated = await store.updateEnvironment(environmentId, (current) => {
      if (current === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no environment "${environmentId}"`, { field: 'environmentId' });
      return change(current);
    });
    return updated as Environment;
  };

  /** A body's `id` (or `name`) may repeat the one in the path, never differ from it. */
  const pathMismatch = (body: Record<string, unknown>, key: string, expected: string): FieldProblem[] =>
    key in body && body[key] !== expected ? [{ field: key, message: `${JSON.stringify(body[key])} differs from the ${key} in the path, "${expected}"` }] : [];

  return {
    /**
     * Validates the whole input first (every problem with its path, also against what is stored
     * and stays), then writes every change in one transaction; idempotent.
     */
    async apply(raw: unknown, options: ApplyOptions = {}): Promise<ConfigChange[]> {
      assertShallow(raw);
      return store.transact((storedList, storedPlugins) => {
        const stored = new Map(storedList.map((e) => [e.id, e]));
        if (options.ifEmpty && storedList.length > 0) {
          // Seeding only: the file is still checked, but what is stored (API edits included) stays.
          const { problems } = checkConfiguration(raw, registry, [], destinationGuard);
          if (problems.length > 0 || (options.inputProblems ?? []).length > 0) throw validationError(sortedProblems([...(options.inputProblems ?? []), ...problems]));
          return { result: [] };
        }
        const fileEnvironments = isRecord(raw) && Array.isArray(raw.environments) ? raw.environments : undefined;
        const restored = fileEnvironments === undefined ? raw : { ...(raw as Record<string, unknown>), environments: fileEnvironments.map((e) => withStoredSecrets(e, stored.get(viewOf(e, '').id ?? ''))) };
        const views = (fileEnvironments ?? []).map((e, index) => viewOf(e, `environments[${index}]`));
        const fileIds = new Set(views.map((v) => v.id));
        // Without --prune, what the file does not name stays, and keeps its keys and ids.
        const kept: EnvironmentView[] = options.prune
          ? []
          : storedList.map((environment) => {
              const view = viewOf(environment, undefined);
              if (!fileIds.has(environment.id)) return view;
              const named = new Set(views.filter((v) => v.id === environment.id).flatMap((v) => v.destinations));
              return { ...view, sdkKeys: [], webhookToken: undefined, flags: [], destinations: view.destinations.filter((id) => !named.has(id)) };
            });
        const checked = checkConfiguration(restored, registry, kept, destinationGuard);
        const inputProblems = options.inputProblems ?? [];
        const inputFields = new Set(inputProblems.map((p) => p.field));
        const problems = sortedProblems([
          ...inputProblems,
          ...checked.problems.filter((p) => !inputFields.has(p.field)),
          ...(isRecord(restored) && Array.isArray(restored.environments) ? restored.environments.flatMap((e, index) => unresolvedSecretProblems(e, registry, `environments[${index}]`)) : []),
        ]);
        if (problems.length > 0 || checked.configuration === undefined) throw validationError(problems);
        const configuration = checked.configuration;

        const next = configuration.environments.map((fileEnvironment) => {
          const current = stored.get(fileEnvironment.id);
          if (options.prune || current === undefined) return fileEnvironment;
          const flagNames = new Set(fileEnvironment.flags.map((f) => f.name));
          const destinationIds = new Set(fileEnvironment.destinations.map((d) => d.id));
          return {
            ...fileEnvironment,
            flags: [...fileEnvironment.flags, ...current.flags.filter((f) => !flagNames.has(f.name))],
            destinations: [...fileEnvironment.destinations, ...current.destinations.filter((d) => !destinationIds.has(d.id))],
          };
        });
        const changes = diffEnvironments(storedList, next, options.prune === true, registry);
        const plugins = options.prune ? [...new Set(configuration.plugins)] : [...new Set([...storedPlugins, ...configuration.plugins])];
        for (const plugin of plugins) if (!storedPlugins.includes(plugin)) changes.push({ action: 'create', kind: 'plugin', environmentId: '', id: plugin });
        for (const plugin of storedPlugins) if (!plugins.includes(plugin)) changes.push({ action: 'delete', kind: 'plugin', environmentId: '', id: plugin });
        if (options.dryRun) return { result: changes };
        const unconfirmed = options.allowedDeletions === undefined ? [] : changes.filter((c) => c.action === 'delete' && !options.allowedDeletions?.includes(deletionKey(c)));
        if (unconfirmed.length > 0) {
          throw new AppError('FLAGSTREAM_ERR_CONFLICT', `the configuration changed since the deletions were confirmed (${unconfirmed.map((c) => `${c.kind} ${c.id}`).join(', ')} too); nothing was changed: run it again`);
        }
        const environments = new Map<string, Environment | undefined>();
        for (const environment of next) if (!isDeepStrictEqual(stored.get(environment.id), environment)) environments.set(environment.id, environment);
        if (options.prune) for (const environment of storedList) if (!fileIds.has(environment.id)) environments.set(environment.id, undefined);
        return { write: { environments, plugins: isDeepStrictEqual(storedPlugins, plugins) ? undefined : plugins }, result: changes };
      });
    },

    async exportYaml(): Promise<string> {
      const { plugins, environments } = await this.exportConfiguration();
      return stringify(plugins.length > 0 ? { plugins, environments } : { environments });
    },

    async exportConfiguration(): Promise<{ plugins: string[]; environments: EnvironmentInput[] }> {
      return { plugins: await store.listPlugins(), environments: (await store.listEnvironments()).map(presentEnvironment) };
    },

    async listEnvironments(): Promise<EnvironmentInput[]> {
      return (await store.listEnvironments()).map(presentEnvironment);
    },

    async getEnvironment(environmentId: string): Promise<EnvironmentInput> {
      return presentEnvironment(await requireEnvironment(environmentId));
    },

    /** Throws not-found unless the environment exists; reads nothing else (no secrets). */
    async assertEnvironment(environmentId: string): Promise<void> {
      if (!(await store.hasEnvironment(environmentId))) await requireEnvironment(environmentId);
    },

    /** Creates or replaces an environment; flags and destinations are kept when the body leaves them out. */
    async putEnvironment(environmentId: string, body: Record<string, unknown>): Promise<{ environment: EnvironmentInput; created: boolean }> {
      assertShallow(body);
      return store.transact((storedList) => {
        const stored = storedList.find((e) => e.id === environmentId);
        const draft = withStoredSecrets({ ...body, id: environmentId, flags: body.flags ?? stored?.flags ?? [], destinations: body.destinations ?? stored?.destinations ?? [] }, stored);
        const { environment, problems } = checkEnvironment(draft, registry, '', destinationGuard);
        const others = storedList.filter((e) => e.id !== environmentId).map((e) => viewOf(e, undefined));
        const all = sortedProblems([...pathMismatch(body, 'id', environmentId), ...problems, ...ruleProblems([viewOf(draft, '')], others), ...unresolvedSecretProblems(draft, registry)]);
        if (all.length > 0 || environment === undefined) throw validationError(all);
        return { write: { environments: new Map([[environmentId, environment]]) }, result: { environment: presentEnvironment(environment), created: stored === undefined } };
      });
    },

    async deleteEnvironment(environmentId: string): Promise<void> {
      await this.assertEnvironment(environmentId);
      await store.updateEnvironment(environmentId, () => undefined);
    },

    /** PUT creates or replaces a flag; PATCH changes an existing one (an unknown name is not found, never created). */
    async putFlag(environmentId: string, name: string, body: Record<string, unknown>, merge: boolean): Promise<{ flag: Flag; created: boolean }> {
      assertShallow(body);
      let result: Flag | undefined;
      let created = false;
      await changeEnvironment(environmentId, (current) => {
        const existing = current.flags.find((f) => f.name === name);
        if (merge && existing === undefined) {
          throw notFound('flag', name, current.flags.map((f) => f.name), 'name', ` in environment "${environmentId}" (PUT creates a flag)`);
        }
        created = existing === undefined;
        const { flag, problems } = checkFlag({ ...(merge ? existing : {}), ...body, name });
        const all = [...pathMismatch(body, 'name', name), ...problems];
        if (all.length > 0 || flag === undefined) throw validationError(all);
        result = flag;
        const flags = existing === undefined ? [...current.flags, flag] : current.flags.map((f) => (f.name === name ? flag : f));
        return { ...current, flags };
      });
      return { flag: result as Flag, created };
    },

    async deleteFlag(environmentId: string, name: string): Promise<void> {
      await changeEnvironment(environmentId, (current) => {
        if (!current.flags.some((f) => f.name === name)) throw notFound('flag', name, current.flags.map((f) => f.name), 'name', ` in environment "${environmentId}"`);
        return { ...current, flags: current.flags.filter((f) => f.name !== name) };
      });
    },

    async listDestinations(environmentId: string): Promise<DestinationInput[]> {
      return (await requireEnvironment(environmentId)).destinations.map(presentDestination);
    },

    async getDestination(destinationId: string): Promise<DestinationInput & { environmentId: string }> {
      const { environment, destination } = await findDestination(destinationId);
      return { ...presentDestination(destination), environmentId: environment.id };
    },

    async createDestination(environmentId: string, body: unknown): Promise<DestinationInput> {
      assertShallow(body);
      await this.assertEnvironment(environmentId);
      const { destination, problems } = checkDestination(body, registry, '', destinationGuard);
      const all = [...problems, ...unresolvedDestinationSecrets(body, registry)];
      if (all.length > 0 || destination === undefined) throw validationError(all);
      const owner = (await store.listEnvironments()).find((e) => e.destinations.some((d) => d.id === destination.id));
      if (owner !== undefined) throw new AppError('FLAGSTREAM_ERR_CONFLICT', `destination "${destination.id}" already exists (environment "${owner.id}")`, { field: 'id' });
      await changeEnvironment(environmentId, (current) => ({ ...current, destinations: [...current.destinations, destination] }));
      return presentDestination(destination);
    },

    /** PUT replaces, PATCH merges (settings merged key by key); `[redacted]` keeps stored secrets. */
    async updateDestination(destinationId: string, given: Record<string, unknown>, merge: boolean): Promise<DestinationInput> {
      assertShallow(given);
      const { environment } = await findDestination(destinationId);
      // What a GET returns can be PUT back: its `environmentId` is accepted when it is the destination's own.
      const { environmentId: claimed, ...body } = given;
      if (claimed !== undefined && claimed !== environment.id) {
        throw validationError([{ field: 'environmentId', message: `the destination belongs to environment "${environment.id}"; to move it, delete it and create it in the other environment` }]);
      }
      let updated: Destination | undefined;
      await changeEnvironment(environment.id, (current) => {
        const existing = current.destinations.find((d) => d.id === destinationId);
        if (existing === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no destination "${destinationId}"`, { field: 'destinationId' });
        const settings = merge && isRecord(body.settings) ? { ...existing.settings, ...body.settings } : merge && body.settings === undefined ? existing.settings : body.settings;
        const draft = withStoredDestinationSecrets({ ...(merge ? existing : {}), ...body, id: destinationId, ...(settings === undefined ? {} : { settings }) }, new Map([[destinationId, existing]]));
        const { destination, problems } = checkDestination(draft, registry, '', destinationGuard);
        const all = [
          ...pathMismatch(body, 'id', destinationId),
          ...problems,
          ...unresolvedDestinationSecrets(draft, registry),
        ];
        if (all.length > 0 || destination === undefined) throw validationError(all);
        updated = destination;
        return { ...current, destinations: current.destinations.map((d) => (d.id === destinationId ? destination : d)) };
      });
      return presentDestination(updated as Destination);
    },

    async deleteDestination(destinationId: string): Promise<void> {
      const { environment } = await findDestination(destinationId);
      await changeEnvironment(environment.id, (current) => ({ ...current, destinations: current.destinations.filter((d) => d.id !== destinationId) }));
    },

    async setDestinationEnabled(destinationId: string, enabled: boolean): Promise<DestinationInput> {
      return this.updateDestination(destinationId, { enabled }, true);
    },
  };
}
export type ConfigService = ReturnType<typeof createConfigService>;

/** Leaf by leaf (objects recursed, arrays compared whole); `secret(path)` values shown as `[redacted]`. */
function fieldChanges(before: unknown, after: unknown, secret: (path: readonly string[]) => boolean, path: readonly string[] = []): FieldChange[] {
  if (isDeepStrictEqual(before, after)) return [];
  if (isRecord(before) && isRecord(after)) {
    return [...new Set([...Object.keys(before), ...Object.keys(after)])].flatMap((key) => fieldChanges(before[key], after[key], secret, [...path, key]));
  }
  const hidden = secret(path);
  const show = (value: unknown) => (hidden && value !== undefined ? REDACTED : value);
  return [{ path: path.join('.'), before: show(before), after: show(after), secret: hidden }];
}

function diffEnvironments(before: readonly Environment[], after: readonly Environment[], prune: boolean, registry: ConnectorRegistry): ConfigChange[] {
  const changes: ConfigChange[] = [];
  const beforeById = new Map(before.map((e) => [e.id, e]));
  const environmentSecret = (path: readonly string[]) => path[0] === 'sdkKeys' || path[0] === 'webhookToken';
  const destinationSecret = (type: string) => (path: readonly string[]) => path[0] === 'settings' && (registry.get(type)?.secretSettings ?? []).includes(path[1] ?? '');
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
    if (!isDeepStrictEqual(nAttrs, pAttrs)) changes.push({ action: 'update', kind: 'environment', environmentId: next.id, id: next.id, fields: fieldChanges(pAttrs, nAttrs, environmentSecret) });
    changes.push(
      ...diffList('flag', next.id, pf, nf, (f) => f.name, (a, b) => fieldChanges(a, b, () => false)),
      ...diffList('destination', next.id, pd, nd, (d) => d.id, (a, b) => fieldChanges(humanDurations(a), humanDurations(b), destinationSecret(b.type))),
    );
  }
  if (prune) {
    const afterIds = new Set(after.map((e) => e.id));
    for (const previous of before) if (!afterIds.has(previous.id)) changes.push({ action: 'delete', kind: 'environment', environmentId: previous.id, id: previous.id });
  }
  return changes;
}

function diffList<T>(
  kind: 'flag' | 'destination',
  environmentId: string,
  before: readonly T[],
  after: readonly T[],
  idOf: (t: T) => string,
  fields: (before: T, after: T) => FieldChange[],
): ConfigChange[] {
  const changes: ConfigChange[] = [];
  const beforeById = new Map(before.map((t) => [idOf(t), t]));
  const afterIds = new Set(after.map(idOf));
  for (const item of after) {
    const previous = beforeById.get(idOf(item));
    if (previous === undefined) changes.push({ action: 'create', kind, environmentId, id: idOf(item) });
    else if (!isDeepStrictEqual(previous, item)) changes.push({ action: 'update', kind, environmentId, id: idOf(item), fields: fields(previous, item) });
  }
  for (const item of before) if (!afterIds.has(idOf(item))) changes.push({ action: 'delete', kind, environmentId, id: idOf(item) });
  return changes;
}
