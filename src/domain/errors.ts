/**
 * The one catalog of thrown errors. Outcomes of deliveries are values (see
 * connectors/connector.ts), not errors; these are for bad input, bad configuration and bugs.
 */
export type ErrorCode =
  | 'FLAGSTREAM_ERR_VALIDATION'
  | 'FLAGSTREAM_ERR_UNAUTHORIZED'
  | 'FLAGSTREAM_ERR_TOO_MANY_AUTH_FAILURES'
  | 'FLAGSTREAM_ERR_NOT_FOUND'
  | 'FLAGSTREAM_ERR_CONFLICT'
  | 'FLAGSTREAM_ERR_PAYLOAD_TOO_LARGE'
  | 'FLAGSTREAM_ERR_UNSUPPORTED_MEDIA_TYPE'
  | 'FLAGSTREAM_ERR_BACKLOG_FULL'
  | 'FLAGSTREAM_ERR_CONFIG'
  | 'FLAGSTREAM_ERR_REDIS';

const httpStatusByCode: Record<ErrorCode, number> = {
  FLAGSTREAM_ERR_VALIDATION: 400,
  FLAGSTREAM_ERR_UNAUTHORIZED: 401,
  FLAGSTREAM_ERR_TOO_MANY_AUTH_FAILURES: 429,
  FLAGSTREAM_ERR_NOT_FOUND: 404,
  FLAGSTREAM_ERR_CONFLICT: 409,
  FLAGSTREAM_ERR_PAYLOAD_TOO_LARGE: 413,
  FLAGSTREAM_ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  FLAGSTREAM_ERR_BACKLOG_FULL: 503,
  FLAGSTREAM_ERR_CONFIG: 500,
  FLAGSTREAM_ERR_REDIS: 503,
};

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly httpStatus: number;
  /** Dotted path of the offending field, e.g. `environments[0].destinations[1].settings.url`. */
  readonly field: string | undefined;
  /** Further problems beyond the first, each with its own field. */
  readonly details: readonly FieldProblem[];

  constructor(code: ErrorCode, message: string, options: { field?: string; details?: readonly FieldProblem[]; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.httpStatus = httpStatusByCode[code];
    this.field = options.field;
    this.details = options.details ?? [];
  }
}

export interface FieldProblem {
  readonly field: string;
  readonly message: string;
}

export function validationError(problems: readonly FieldProblem[], prefix = ''): AppError {
  const first = problems[0] ?? { field: prefix, message: 'invalid input' };
  const summary = problems.length === 1 ? `${first.field}: ${first.message}` : `${problems.length} problems; first: ${first.field}: ${first.message}`;
  return new AppError('FLAGSTREAM_ERR_VALIDATION', summary, { field: first.field, details: problems });
}

/** Renders a zod issue path the way users write it: `environments[0].destinations[1].settings.url`. */
export function formatPath(path: readonly PropertyKey[], prefix = ''): string {
  let out = prefix;
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(root)' : out;
}

export function problemsFromZod(issues: readonly { path: readonly PropertyKey[]; message: string }[], prefix = ''): FieldProblem[] {
  return issues.map((issue) => ({ field: formatPath(issue.path, prefix), message: issue.message }));
}
