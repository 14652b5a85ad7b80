import type { ConnectorRegistry } from '../connectors/registry.js';
import { createDestinationGuard, type DestinationGuard } from '../delivery/destination-guard.js';
import { type Configuration, ConfigurationSchema, type Destination, DestinationSchema, type Environment, EnvironmentSchema } from '../domain/configuration.js';
import { type FieldProblem, problemsFromZod, validationError } from '../domain/errors.js';

/**
 * Validates a whole configuration: the shape (zod), then every destination's settings with its
 * connector's schema, then the rules across entries (unique ids, keys and tokens). Every problem
 * is reported with its full path; nothing is applied unless all of it is valid.
 */
/** `at.rest`, or just `rest` at the root. */
function field(at: string, rest: string): string {
  return at === '' ? rest : `${at}.${rest}`;
}

/** Without an explicit guard, nothing private is allowed: the safe default for a validator. */
const strictGuard = createDestinationGuard([]);

export function validateConfiguration(raw: unknown, registry: ConnectorRegistry, guard: DestinationGuard = strictGuard): Configuration {
  const parsed = ConfigurationSchema.safeParse(raw);
  if (!parsed.success) throw validationError(problemsFromZod(parsed.error.issues));
  const problems: FieldProblem[] = [];
  const environmentIds = new Map<string, number>();
  const destinationIds = new Map<string, string>();
  const sdkKeys = new Map<string, string>();
  parsed.data.environments.forEach((environment, envIndex) => {
    const at = `environments[${envIndex}]`;
    if (environmentIds.has(environment.id)) problems.push({ field: field(at, `id`), message: `duplicate environment id "${environment.id}"` });
    environmentIds.set(environment.id, envIndex);
    problems.push(...environmentProblems(environment, registry, at, guard));
    environment.sdkKeys.forEach((key, keyIndex) => {
      const owner = sdkKeys.get(key);
      if (owner !== undefined && owner !== environment.id) problems.push({ field: field(at, `sdkKeys[${keyIndex}]`), message: `this SDK key already belongs to environment "${owner}"` });
      sdkKeys.set(key, environment.id);
    });
    environment.destinations.forEach((destination, destIndex) => {
      const owner = destinationIds.get(destination.id);
      if (owner !== undefined) problems.push({ field: field(at, `destinations[${destIndex}].id`), message: `duplicate destination id "${destination.id}" (also in environment "${owner}")` });
      destinationIds.set(destination.id, environment.id);
    });
  });
  if (problems.length > 0) throw validationError(problems);
  return parsed.data;
}

/** Problems within one environment (flags and destinations), paths prefixed with `at`. */
export function environmentProblems(environment: Environment, registry: ConnectorRegistry, at: string, guard: DestinationGuard = strictGuard): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const flagNames = new Set<string>();
  environment.flags.forEach((flag, index) => {
    if (flagNames.has(flag.name)) problems.push({ field: field(at, `flags[${index}].name`), message: `duplicate flag "${flag.name}"` });
    flagNames.add(flag.name);
  });
  const destinationIds = new Set<string>();
  environment.destinations.forEach((destination, index) => {
    if (destinationIds.has(destination.id)) problems.push({ field: field(at, `destinations[${index}].id`), message: `duplicate destination id "${destination.id}"` });
    destinationIds.add(destination.id);
    problems.push(...destinationProblems(destination, registry, field(at, `destinations[${index}]`), guard));
  });
  return problems;
}

export function destinationProblems(destination: Destination, registry: ConnectorRegistry, at: string, guard: DestinationGuard = strictGuard): FieldProblem[] {
  const connector = registry.get(destination.type);
  if (!connector) {
    const known = registry.list().map((c) => c.type).join(', ');
    return [{ field: field(at, `type`), message: `unknown connector type "${destination.type}"; known: ${known}` }];
  }
  const settings = connector.settingsSchema.safeParse(destination.settings);
  const problems = settings.success ? [] : problemsFromZod(settings.error.issues, field(at, `settings`));
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

export function parseEnvironment(raw: unknown, registry: ConnectorRegistry, at = '', guard: DestinationGuard = strictGuard): Environment {
  const parsed = EnvironmentSchema.safeParse(raw);
  if (!parsed.success) throw validationError(problemsFromZod(parsed.error.issues, at));
  const problems = environmentProblems(parsed.data, registry, at, guard);
  if (problems.length > 0) throw validationError(problems);
  return parsed.data;
}

export function parseDestination(raw: unknown, registry: ConnectorRegistry, at = '', guard: DestinationGuard = strictGuard): Destination {
  const parsed = DestinationSchema.safeParse(raw);
  if (!parsed.success) throw validationError(problemsFromZod(parsed.error.issues, at));
  const problems = destinationProblems(parsed.data, registry, at, guard);
  if (problems.length > 0) throw validationError(problems);
  return parsed.data;
}
