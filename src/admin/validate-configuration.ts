import type { z } from 'zod';
import type { ConnectorRegistry } from '../connectors/registry.js';
import { createDestinationGuard, type DestinationGuard } from '../delivery/destination-guard.js';
import { type Configuration, ConfigurationSchema, type Destination, DestinationSchema, type Environment, EnvironmentSchema, type Flag, FlagSchema } from '../domain/configuration.js';
import { type FieldProblem, formatPath, validationError } from '../domain/errors.js';
import { REDACTED } from '../observability/redact.js';
import { closestName, knownKeys, type UnknownKey, unknownKeys } from './unknown-keys.js';

/**
 * Validates configuration input (a file, an admin API body) in one pass and reports every
 * problem with its path; nothing is applied unless all of it is valid. The checks:
 * 1. keys no schema names, with a "did you mean" (connector settings included);
 * 2. the shape (zod), each environment and destination on its own, so one bad entry never
 *    hides the problems of another;
 * 3. per destination, `destinationProblems`: the settings against the connector's schema (the
 *    place for further per-destination checks);
 * 4. the rules across entries: unique environment ids, flag names, destination ids, SDK keys and
 *    webhook tokens, also against what is already stored and stays.
 */

/** `at.rest`, or just `rest` at the root. */
function field(at: string, rest: string): string {
  return at === '' ? rest : `${at}.${rest}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Zod's problems, except unrecognized keys: `keyProblems` reports those with a suggestion. */
function zodProblems(issues: readonly z.core.$ZodIssue[], at: string): FieldProblem[] {
  return issues.filter((issue) => issue.code !== 'unrecognized_keys').map((issue) => ({ field: formatPath(issue.path, at), message: issue.message }));
}

function unknownKeyProblem(unknown: UnknownKey, at: string, suggestion: string | undefined): FieldProblem {
  const expected = unknown.known.length <= 12 ? unknown.known.join(', ') : `${unknown.known.slice(0, 12).join(', ')}, …`;
  return {
    field: formatPath([...unknown.path, unknown.key], at),
    message: suggestion === undefined ? `unknown key; expected one of: ${expected}` : `unknown key; did you mean ${suggestion}?`,
  };
}

/** Keys of `value` that `schema` does not name, each a problem with its path. */
export function keyProblems(schema: z.ZodType, value: unknown, at: string): FieldProblem[] {
  return unknownKeys(schema, value).map((unknown) => unknownKeyProblem(unknown, at, closestName(unknown.key, unknown.known)));
}

/** Unknown keys of a destination as given: its own, `delivery`'s and (with a known type) its settings'. */
function destinationKeyProblems(raw: unknown, registry: ConnectorRegistry, at: string): FieldProblem[] {
  if (!isRecord(raw)) return [];
  const connector = typeof raw.type === 'string' ? registry.get(raw.type) : undefined;
  const settingsKeys = connector === undefined ? [] : knownKeys(connector.settingsSchema);
  const problems = unknownKeys(DestinationSchema, raw).map((unknown) => {
    // `batchSize` written beside `settings` (or in `delivery`) is a setting put in the wrong place.
    const misplaced = unknown.path.length === 0 || (unknown.path.length === 1 && unknown.path[0] === 'delivery') ? closestName(unknown.key, settingsKeys) : undefined;
    return unknownKeyProblem(unknown, at, closestName(unknown.key, unknown.known) ?? (misplaced === undefined ? undefined : `settings.${misplaced}`));
  });
  if (connector !== undefined && isRecord(raw.settings)) problems.push(...keyProblems(connector.settingsSchema, raw.settings, field(at, 'settings')));
  return problems;
}

/** A destination's settings against its connector's schema (the type named, or a suggestion). */
export function settingsProblems(type: string, settings: Record<string, unknown>, registry: ConnectorRegistry, at: string): FieldProblem[] {
  const connector = registry.get(type);
  if (!connector) {
    const known = registry.list().map((c) => c.type);
    const suggestion = closestName(type, known);
    return [{ field: field(at, `type`), message: `unknown connector type "${type}"; ${suggestion === undefined ? '' : `did you mean ${suggestion}? `}known: ${known.join(', ')}` }];
  }
  const parsed = connector.settingsSchema.safeParse(settings);
  return parsed.success ? [] : zodProblems(parsed.error.issues, field(at, `settings`));
}

/** Without an explicit guard, nothing private is allowed: the safe default for a validator. */
const strictGuard = createDestinationGuard([]);

/**
 * The checks of one parsed destination. Further per-destination checks belong here, so every
 * path (apply, the admin API, FLAGSTREAM_CONFIG) runs them.
 */
export function destinationProblems(destination: Destination, registry: ConnectorRegistry, at: string, guard: DestinationGuard = strictGuard): FieldProblem[] {
  const problems = settingsProblems(destination.type, destination.settings, registry, at);
  return [...problems, ...destinationHostProblems(destination.settings, guard, field(at, 'settings'))];
}

/**
 * Configuration-time half of the destination guard: every URL among the settings (any connector,
 * plugins included, whatever the field is called) whose host is certainly refused — a literal
 * private address, `localhost`, a local-use name — is an error on that field. No DNS here: the
 * answer where `apply` runs may differ from the workers', and change later; the transport
 * checks every resolved address on every connection.
 */
function destinationHostProblems(value: unknown, guard: DestinationGuard, at: string): FieldProblem[] {
  if (typeof value === 'string') {
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value.trim())) return [];
    let host: string;
    try {
      host = new URL(value.trim()).hostname;
    } catch {
      return [];
    }
    const refusal = host === '' ? undefined : guard.refusalForHost(host);
    return refusal === undefined ? [] : [{ field: at, message: refusal }];
  }
  if (Array.isArray(value)) return value.flatMap((item, index) => destinationHostProblems(item, guard, `${at}[${index}]`));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([key, item]) => destinationHostProblems(item, guard, `${at}.${key}`));
  }
  return [];
}

/** Every problem of one destination as given; the destination when there are none. */
export function checkDestination(raw: unknown, registry: ConnectorRegistry, at = '', guard: DestinationGuard = strictGuard): { destination: Destination | undefined; problems: FieldProblem[] } {
  const problems = destinationKeyProblems(raw, registry, at);
  const parsed = DestinationSchema.safeParse(raw);
  if (parsed.success) problems.push(...destinationProblems(parsed.data, registry, at, guard));
  else {
    problems.push(...zodProblems(parsed.error.issues, at));
    // The settings are checked even when another field is wrong, so they need no second round.
    const typeAndSettings = DestinationSchema.pick({ type: true, settings: true }).safeParse(raw);
    if (typeAndSettings.success) problems.push(...settingsProblems(typeAndSettings.data.type, typeAndSettings.data.settings, registry, at));
  }
  return { destination: parsed.success && problems.length === 0 ? parsed.data : undefined, problems };
}

/** Every problem of one flag as given (no rules across flags). */
export function checkFlag(raw: unknown, at = ''): { flag: Flag | undefined; problems: FieldProblem[] } {
  const problems = keyProblems(FlagSchema, raw, at);
  const parsed = FlagSchema.safeParse(raw);
  if (!parsed.success) problems.push(...zodProblems(parsed.error.issues, at));
  return { flag: parsed.success && problems.length === 0 ? parsed.data : undefined, problems };
}

/** Every problem of one environment as given, except the rules across environments. */
export function checkEnvironment(raw: unknown, registry: ConnectorRegistry, at = '', guard: DestinationGuard = strictGuard): { environment: Environment | undefined; problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  // Array.from: a hole in a sparse array is checked as the undefined it is.
  const destinations = isRecord(raw) && Array.isArray(raw.destinations) ? Array.from(raw.destinations as unknown[]) : undefined;
  problems.push(...keyProblems(EnvironmentSchema, isRecord(raw) ? { ...raw, destinations: undefined } : raw, at));
  destinations?.forEach((destination, index) => problems.push(...checkDestination(destination, registry, field(at, `destinations[${index}]`), guard).problems));
  const parsed = EnvironmentSchema.safeParse(raw);
  // What checkDestination reported again here is the same field and message: sortedProblems keeps one.
  if (!parsed.success) problems.push(...zodProblems(parsed.error.issues, at));
  problems.push(...ruleProblems([viewOf(raw, at)], []));
  return { environment: parsed.success && problems.length === 0 ? parsed.data : undefined, problems };
}

/** What the rules across entries look at, read leniently from input or from a stored environment. */
export interface EnvironmentView {
  /** Path in the input; undefined for a stored environment that is not part of it. */
  readonly at: string | undefined;
  readonly id: string | undefined;
  readonly sdkKeys: readonly (string | undefined)[];
  readonly webhookToken: string | undefined;
  readonly flags: readonly (string | undefined)[];
  readonly destinations: readonly (string | undefined)[];
}

export function viewOf(raw: unknown, at: string | undefined): EnvironmentView {
  const record = isRecord(raw) ? raw : {};
  const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
  const list = (value: unknown) => (Array.isArray(value) ? (value as unknown[]) : []);
  return {
    at,
    id: text(record.id),
    sdkKeys: list(record.sdkKeys).map(text),
    webhookToken: text(record.webhookToken),
    flags: list(record.flags).map((flag) => text(isRecord(flag) ? flag.name : undefined)),
    destinations: list(record.destinations).map((destination) => text(isRecord(destination) ? destination.id : undefined)),
  };
}

/**
 * Unique environment ids, flag names and destination ids; an SDK key, webhook token or
 * destination id belongs to one environment. `kept` (stored, staying as they are) claim theirs
 * first, so a conflict is reported where the input introduces it, naming both environments.
 */
export function ruleProblems(inputs: readonly EnvironmentView[], kept: readonly EnvironmentView[]): FieldProblem[] {
  const problems: FieldProblem[] = [];
  interface Owner {
    readonly environmentId: string | undefined;
    readonly at: string | undefined;
  }
  const owners = { environment: new Map<string, Owner>(), sdkKey: new Map<string, Owner>(), webhookToken: new Map<string, Owner>(), destination: new Map<string, Owner>() };
  const where = (owner: Owner) => `environment "${owner.environmentId ?? '?'}"${owner.at === undefined ? '' : ` (${owner.at})`}`;
  const claim = (kind: keyof typeof owners, value: string | undefined, view: EnvironmentView, path: string | undefined, conflict: (owner: Owner) => string) => {
    // `[redacted]` stands for a stored value: the service restores it before these rules run.
    if (value === undefined || value === REDACTED) return;
    const owner = owners[kind].get(value);
    if (owner === undefined) owners[kind].set(value, { environmentId: view.id, at: view.at });
    else if (path !== undefined && owner.environmentId !== view.id) problems.push({ field: path, message: conflict(owner) });
  };
  for (const view of kept) {
    claim('environment', view.id, view, undefined, () => '');
    view.sdkKeys.forEach((key) => claim('sdkKey', key, view, undefined, () => ''));
    claim('webhookToken', view.webhookToken, view, undefined, () => '');
    view.destinations.forEach((id) => claim('destination', id, view, undefined, () => ''));
  }
  const inputIds = new Map<string, string | undefined>();
  for (const view of inputs) {
    const at = view.at ?? '';
    const name = `"${view.id ?? '?'}"`;
    if (view.id !== undefined) {
      if (inputIds.has(view.id)) problems.push({ field: field(at, 'id'), message: `duplicate environment id "${view.id}" (also ${inputIds.get(view.id) ?? 'above'})` });
      inputIds.set(view.id, view.at);
    }
    const flagNames = new Map<string, number>();
    view.flags.forEach((flag, index) => {
      if (flag === undefined) return;
      if (flagNames.has(flag)) problems.push({ field: field(at, `flags[${index}].name`), message: `duplicate flag "${flag}" (also flags[${flagNames.get(flag)}])` });
      else flagNames.set(flag, index);
    });
    const destinationIds = new Map<string, number>();
    view.destinations.forEach((id, index) => {
      if (id === undefined) return;
      if (destinationIds.has(id)) problems.push({ field: field(at, `destinations[${index}].id`), message: `duplicate destination id "${id}" (also destinations[${destinationIds.get(id)}])` });
      else destinationIds.set(id, index);
      claim('destination', id, view, field(at, `destinations[${index}].id`), (owner) => `destination id "${id}" is already used by ${where(owner)}; ids are unique across environments, so environment ${name} cannot use it too`);
    });
    view.sdkKeys.forEach((key, index) =>
      claim('sdkKey', key, view, field(at, `sdkKeys[${index}]`), (owner) => `this SDK key already belongs to ${where(owner)}; a key selects one environment, so environment ${name} cannot have it too`),
    );
    claim('webhookToken', view.webhookToken, view, field(at, 'webhookToken'), (owner) => `this webhook token already belongs to ${where(owner)}; environment ${name} needs its own`);
  }
  return problems;
}

const unresolvedSecret = 'is "[redacted]", which keeps a stored secret, but nothing is stored at this place; give the value';

/**
 * `[redacted]` keeps a stored secret (the caller restores those first); one still there has
 * nothing to stand for. Checked on the input as given, so it is reported with everything else.
 */
export function unresolvedSecretProblems(raw: unknown, registry: ConnectorRegistry, at = ''): FieldProblem[] {
  if (!isRecord(raw)) return [];
  const problems: FieldProblem[] = [];
  if (Array.isArray(raw.sdkKeys)) raw.sdkKeys.forEach((key, index) => key === REDACTED && problems.push({ field: field(at, `sdkKeys[${index}]`), message: unresolvedSecret }));
  if (raw.webhookToken === REDACTED) problems.push({ field: field(at, 'webhookToken'), message: unresolvedSecret });
  if (Array.isArray(raw.destinations)) raw.destinations.forEach((destination, index) => problems.push(...unresolvedDestinationSecrets(destination, registry, field(at, `destinations[${index}]`))));
  return problems;
}

export function unresolvedDestinationSecrets(raw: unknown, registry: ConnectorRegistry, at = ''): FieldProblem[] {
  if (!isRecord(raw) || !isRecord(raw.settings) || typeof raw.type !== 'string') return [];
  const problems: FieldProblem[] = [];
  const visit = (value: unknown, path: string) => {
    if (value === REDACTED) problems.push({ field: path, message: unresolvedSecret });
    else if (Array.isArray(value)) value.forEach((item, index) => visit(item, `${path}[${index}]`));
    else if (isRecord(value)) for (const [key, item] of Object.entries(value)) visit(item, `${path}.${key}`);
  };
  for (const key of registry.get(raw.type)?.secretSettings ?? []) visit(raw.settings[key], field(at, `settings.${key}`));
  return problems;
}

/** Deeper than any configuration: refused before anything walks it (recursion on hostile input). */
const maxDepth = 32;

/** Throws a validation error for input nested deeper than a configuration can be, naming where. */
export function assertShallow(raw: unknown, at = ''): void {
  const stack: [unknown, PropertyKey[]][] = [[raw, []]];
  while (stack.length > 0) {
    const [value, path] = stack.pop() as [unknown, PropertyKey[]];
    if (value === null || typeof value !== 'object') continue;
    if (path.length >= maxDepth) throw validationError([{ field: formatPath(path.slice(0, 8), at), message: `nested more than ${maxDepth} levels deep (or refers to itself); no configuration is` }]);
    for (const [key, item] of Object.entries(value)) stack.push([item, [...path, Array.isArray(value) ? Number(key) : key]]);
  }
}

/** One problem per field and message, in path order (numbers compared as numbers). */
export function sortedProblems(problems: readonly FieldProblem[]): FieldProblem[] {
  const seen = new Set<string>();
  return problems
    .filter((problem) => {
      const key = `${problem.field}\u0000${problem.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort((a, b) => a.field.localeCompare(b.field, 'en', { numeric: true }));
}

/**
 * Every problem of a whole configuration document, with the rules across entries also checked
 * against `kept` (stored environments that stay). The configuration when there are none.
 */
export function checkConfiguration(raw: unknown, registry: ConnectorRegistry, kept: readonly EnvironmentView[] = [], guard: DestinationGuard = strictGuard): { configuration: Configuration | undefined; problems: FieldProblem[] } {
  if (!isRecord(raw)) return { configuration: undefined, problems: [{ field: '(root)', message: 'expected a mapping with `environments` (and optionally `plugins`)' }] };
  const environments = Array.isArray(raw.environments) ? Array.from(raw.environments as unknown[]) : undefined;
  const problems = keyProblems(ConfigurationSchema, { ...raw, environments: undefined }, '');
  environments?.forEach((environment, index) => problems.push(...checkEnvironment(environment, registry, `environments[${index}]`, guard).problems));
  const parsed = ConfigurationSchema.safeParse(raw);
  if (!parsed.success) problems.push(...zodProblems(parsed.error.issues, ''));
  problems.push(...ruleProblems(environments?.map((environment, index) => viewOf(environment, `environments[${index}]`)) ?? [], kept));
  const sorted = sortedProblems(problems);
  return { configuration: parsed.success && sorted.length === 0 ? parsed.data : undefined, problems: sorted };
}

/** checkConfiguration for callers that want the value or a validation error listing every problem. */
export function validateConfiguration(raw: unknown, registry: ConnectorRegistry, guard: DestinationGuard = strictGuard): Configuration {
  const { configuration, problems } = checkConfiguration(raw, registry, [], guard);
  if (configuration === undefined) throw validationError(problems);
  return configuration;
}
