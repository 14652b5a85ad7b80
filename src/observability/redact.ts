/** What every secret looks like on the way out: API output, `export`, logs and dead letters. */
export const REDACTED = '[redacted]';

/** Replaces a secret value with the marker, keeping its shape (each array item, each record value). */
export function redactValue(value: unknown): unknown {
  if (value === undefined || value === null) return value;
  if (Array.isArray(value)) return value.map(() => REDACTED);
  if (typeof value === 'object') return Object.fromEntries(Object.keys(value).map((k) => [k, REDACTED]));
  return REDACTED;
}

/**
 * Where an update carries the marker back (an edited `export`, a PUT of what a GET returned),
 * keep the stored secret: redaction must survive a round trip without erasing credentials.
 */
export function restoreRedacted(incoming: unknown, stored: unknown): unknown {
  if (incoming === REDACTED) return stored;
  if (Array.isArray(incoming)) {
    const storedItems = Array.isArray(stored) ? stored : [];
    return incoming.map((item, index) => restoreRedacted(item, storedItems[index]));
  }
  if (incoming !== null && typeof incoming === 'object') {
    const storedRecord = stored !== null && typeof stored === 'object' && !Array.isArray(stored) ? (stored as Record<string, unknown>) : {};
    return Object.fromEntries(Object.entries(incoming).map(([k, v]) => [k, restoreRedacted(v, storedRecord[k])]));
  }
  return incoming;
}

/** pino redact paths: request headers that carry keys never reach a log line. */
export const logRedactPaths = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'settings.secret',
  'settings.apiKey',
  'settings.secretKey',
  '*.authorization',
];

// ——— Scrubbing secrets out of what destinations answer ———

/** Shorter values are not scrubbed: they would match ordinary words, and hide nothing worth hiding. */
const minSecretLength = 4;
/** A base64 fragment this short could occur by chance in any base64 text. */
const minFragmentLength = 8;

/** Replaces every known secret, in any of the forms it travels in, with the marker. */
export type Scrubber = (text: string) => string;

/** Every string inside a settings value: a plain string, each item of a list, each value of a map (e.g. webhook headers). */
export function secretStrings(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (typeof value === 'number' || typeof value === 'bigint') return [String(value)];
  if (Array.isArray(value)) return value.flatMap(secretStrings);
  if (value !== null && typeof value === 'object') return Object.values(value).flatMap(secretStrings);
  return [];
}

/** The values of a destination's secret settings (what its connector lists in `secretSettings`). */
export function destinationSecrets(secretSettings: readonly string[], settings: unknown): string[] {
  if (settings === null || typeof settings !== 'object') return [];
  const record = settings as Record<string, unknown>;
  return secretSettings.flatMap((key) => secretStrings(record[key]));
}

/** Request headers whose values are credentials: Authorization, cookies, API keys, tokens, signatures. */
export function isCredentialHeader(name: string): boolean {
  return /auth|key|token|secret|passw|signature|session|credential|cookie/i.test(name);
}

/** What a credential header value gives away: itself, the token after its scheme, and Basic's `user:password` and each half. */
export function credentialsInHeader(value: string): string[] {
  const trimmed = value.trim();
  const found = [trimmed];
  const scheme = /^([A-Za-z][A-Za-z0-9_-]*)\s+(\S.*)$/.exec(trimmed);
  if (scheme?.[2] !== undefined) {
    found.push(scheme[2]);
    if (scheme[1]?.toLowerCase() === 'basic') {
      const decoded = Buffer.from(scheme[2], 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon >= 0) found.push(decoded, decoded.slice(0, colon), decoded.slice(colon + 1));
    }
  }
  return found;
}

/**
 * Base64 of `secret` as it appears inside the base64 of any longer text: a secret starting at
 * byte offset 0, 1 or 2 of a 3-byte group encodes to one of three fragments (its edges depend
 * on the neighbouring bytes and are left out). Standard and URL-safe alphabets.
 */
function base64Fragments(secret: string): string[] {
  const bytes = Buffer.from(secret, 'utf8');
  const fragments = [bytes.toString('base64'), bytes.toString('base64').replace(/=+$/, ''), bytes.toString('base64url')];
  for (let offset = 0; offset < 3; offset += 1) {
    const aligned = bytes.subarray(offset, offset + Math.floor((bytes.length - offset) / 3) * 3);
    const fragment = aligned.toString('base64');
    if (fragment.length >= minFragmentLength) fragments.push(fragment, aligned.toString('base64url'));
  }
  return fragments;
}

const xmlEntities: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** The secret as text carries it: raw, URL-encoded (upper and lower case escapes, `+` for spaces), JSON- and XML-escaped. */
function textForms(secret: string): string[] {
  const encoded = encodeURIComponent(secret);
  return [
    secret,
    encoded,
    encoded.replace(/%20/g, '+'),
    encoded.replace(/%[0-9A-F]{2}/g, (escape) => escape.toLowerCase()),
    JSON.stringify(secret).slice(1, -1),
    secret.replace(/[&<>"']/g, (char) => xmlEntities[char] ?? char),
  ];
}

const isBase64Char = (char: string | undefined): boolean => char !== undefined && /[A-Za-z0-9+/_-]/.test(char);

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * A scrubber for these secrets. A base64 fragment takes the whole base64 word it is part of
 * with it (a Basic credential, a base64 body), so no edge of it is left to decode. Plain
 * alternation of literals, no nested quantifiers: linear in the text, whatever a vendor sends.
 */
export function createScrubber(secrets: Iterable<string>): Scrubber {
  const plain = new Set<string>();
  const base64 = new Set<string>();
  for (const secret of new Set(secrets)) {
    if (secret.length < minSecretLength || secret === REDACTED) continue;
    for (const form of textForms(secret)) plain.add(form);
    for (const fragment of base64Fragments(secret)) if (fragment.length >= minSecretLength && !plain.has(fragment)) base64.add(fragment);
  }
  const forms = [...plain, ...base64].sort((a, b) => b.length - a.length);
  if (forms.length === 0) return (text) => text;
  const pattern = new RegExp(forms.map(escapeRegExp).join('|'), 'g');
  return (text) => {
    if (text === '') return text;
    const spans: [number, number][] = [];
    for (const match of text.matchAll(pattern)) {
      let start = match.index;
      let end = start + match[0].length;
      if (base64.has(match[0])) {
        while (isBase64Char(text[start - 1])) start -= 1;
        while (isBase64Char(text[end])) end += 1;
        while (text[end] === '=') end += 1;
      }
      const last = spans.at(-1);
      if (last !== undefined && start <= last[1]) last[1] = Math.max(last[1], end);
      else spans.push([start, end]);
    }
    if (spans.length === 0) return text;
    let out = '';
    let from = 0;
    for (const [start, end] of spans) {
      out += text.slice(from, start) + REDACTED;
      from = end;
    }
    return out + text.slice(from);
  };
}

/** Applies a scrubber to every string of a value: plain objects, arrays and maps are copied, other objects kept as they are. */
export function scrubDeep<T>(value: T, scrub: Scrubber): T {
  const walk = (item: unknown): unknown => {
    if (typeof item === 'string') return scrub(item);
    if (Array.isArray(item)) return item.map(walk);
    if (item instanceof Map) return new Map([...item].map(([key, entry]) => [key, walk(entry)]));
    if (item !== null && typeof item === 'object') {
      const prototype = Object.getPrototypeOf(item) as unknown;
      if (prototype !== Object.prototype && prototype !== null) return item;
      return Object.fromEntries(Object.entries(item).map(([key, entry]) => [key, walk(entry)]));
    }
    return item;
  };
  return walk(value) as T;
}

const credentialNames =
  'authorization|proxy-authorization|x-api-key|api[_-]?key|apikey|api[_-]?token|access[_-]?token|auth[_-]?token|refresh[_-]?token|id[_-]?token|session[_-]?token|security[_-]?token|client[_-]?secret|secret[_-]?key|secret|password|passwd|write[_-]?key|private[_-]?key|token';
// `name: value`, `name=value`, `"name":"value"`; a value may start with an auth scheme (`Bearer …`).
const namedCredential = new RegExp(`(["']?\\b(?:${credentialNames})\\b["']?\\s*[:=]\\s*["']?)(?!\\[redacted\\])((?:(?:Bearer|Basic|Token|Digest)\\s+)?[^\\s"',;&<>}\\]]+)`, 'gi');
const bearerCredential = /\b(Bearer\s+)([A-Za-z0-9._~+/-]{8,}=*)/g;
const basicCredential = /\b(Basic\s+)([A-Za-z0-9+/]{8,}={0,2})/g;
const awsAccessKeyId = /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/g;

/**
 * A last net, by shape, for credentials nobody declared (a plugin connector without
 * `secretSettings`, an error message that quotes a header): values of credential-named
 * fields and headers, Bearer tokens, Basic credentials that decode to `user:password`, AWS key
 * ids. The exact scrubber above, which knows the secrets, is the real defence.
 */
export function scrubCredentialPatterns(text: string): string {
  return text
    .replace(namedCredential, (_, name: string) => `${name}${REDACTED}`)
    .replace(bearerCredential, (_, scheme: string) => `${scheme}${REDACTED}`)
    .replace(basicCredential, (whole: string, scheme: string, token: string) => (Buffer.from(token, 'base64').toString('utf8').includes(':') ? `${scheme}${REDACTED}` : whole))
    .replace(awsAccessKeyId, REDACTED);
}
