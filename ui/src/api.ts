/** The admin API, called with the dashboard's session cookie (never the token itself). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let onUnauthorized: () => void = () => undefined;
export function whenUnauthorized(handler: () => void): void {
  onUnauthorized = handler;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`/admin/v1${path}`, {
    method,
    credentials: 'same-origin',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (response.status === 401) onUnauthorized();
  const text = await response.text();
  const parsed: unknown = text === '' ? undefined : JSON.parse(text);
  if (!response.ok) {
    const error = (parsed as { error?: { message?: string } } | undefined)?.error;
    throw new ApiError(response.status, error?.message ?? `HTTP ${response.status}`);
  }
  return parsed as T;
}

export async function login(token: string): Promise<void> {
  const response = await fetch('/ui/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
  if (!response.ok) {
    const parsed = (await response.json().catch(() => undefined)) as { error?: { message?: string } } | undefined;
    throw new ApiError(response.status, parsed?.error?.message ?? `HTTP ${response.status}`);
  }
}

export async function logout(): Promise<void> {
  await fetch('/ui/logout', { method: 'POST' });
}

export interface Flag {
  readonly name: string;
  readonly trafficType?: string;
  readonly trackImpressions: boolean;
}
export interface Destination {
  readonly id: string;
  readonly type: string;
  readonly enabled: boolean;
  readonly settings: Record<string, unknown>;
}
export interface Environment {
  readonly id: string;
  readonly flags: Flag[];
  readonly destinations: Destination[];
}
export interface DestinationHealth {
  readonly destinationId: string;
  readonly state: 'healthy' | 'open' | 'paused';
  readonly consecutiveFailures: number;
  readonly reason?: string;
  readonly lastError?: string;
  readonly lastErrorAt?: number;
  readonly enabled: boolean;
}
export interface Ledger {
  readonly environments: { environmentId: string; destinations: { destinationId: string; delivered: number; pending: number; deadLettered: number }[] }[];
}
export interface Connector {
  readonly type: string;
  readonly displayName: string;
  readonly description: string;
  readonly settings: JsonSchema;
  readonly secretSettings: readonly string[];
}
export interface JsonSchema {
  readonly type?: string;
  readonly description?: string;
  readonly properties?: Record<string, JsonSchema>;
  readonly required?: readonly string[];
  readonly enum?: readonly unknown[];
  readonly default?: unknown;
  readonly minimum?: number;
  readonly maximum?: number;
}
export interface DeadLetterSummary {
  readonly id: string;
  readonly destinationId: string;
  readonly environmentId: string;
  readonly reason: string;
  readonly error?: { message?: string; status?: number; body?: string };
  readonly attempts: number;
  readonly createdAt: number;
  readonly status: 'pending' | 'replayed';
  readonly impressionCount: number;
}
export type DeadLetter = Omit<DeadLetterSummary, 'impressionCount'> & { readonly impressions: Record<string, unknown>[] };
export interface ReplayReport {
  readonly dryRun: boolean;
  readonly deadLetters: number;
  readonly impressions: number;
  readonly skipped: unknown[];
}
export interface MonitoringReport {
  readonly timestamps: number[];
  readonly days: string[];
  readonly flags: {
    flag: string;
    total: number;
    uniqueKeys: number;
    treatments: { treatment: string; impressions: number[]; total: number; uniqueKeys: number; uniqueKeysPerDay: number[] }[];
  }[];
  readonly mtks: { month: string; keys: number }[];
}
export interface TestAnswer {
  readonly outcome: string;
  readonly reason?: string;
  readonly response?: { status: number; body?: string };
  readonly durationMs?: number;
}
