import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { AppError } from '../domain/errors.js';

const marker = 'enc:v1:';

/**
 * Encrypts secret configuration values at rest with AES-256-GCM under FLAGSTREAM_ENCRYPTION_KEY.
 * Without a key, values are stored as they are (and flagstream warns at start).
 */
export interface SecretBox {
  readonly encrypts: boolean;
  seal(value: unknown): unknown;
  open(value: unknown): unknown;
}

/**
 * For commands that never need a secret's value (export redacts, stats and dead letters need
 * none): stored values are left sealed, and nothing can be written through it.
 */
export const sealedSecrets: SecretBox = {
  encrypts: false,
  seal() {
    throw new AppError('FLAGSTREAM_ERR_CONFIG', 'this command reads the configuration without its secrets and cannot write it');
  },
  open: (value) => value,
};

export function createSecretBox(base64Key: string | undefined): SecretBox {
  const key = base64Key === undefined || base64Key === '' ? undefined : Buffer.from(base64Key, 'base64');
  // Buffer.from skips characters that are not base64: compare the round trip to catch a mangled key.
  if (key !== undefined && (key.length !== 32 || key.toString('base64').replace(/=+$/, '') !== base64Key?.trim().replace(/=+$/, ''))) {
    throw new AppError('FLAGSTREAM_ERR_CONFIG', 'FLAGSTREAM_ENCRYPTION_KEY must be the base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)', {
      field: 'FLAGSTREAM_ENCRYPTION_KEY',
    });
  }
  return {
    encrypts: key !== undefined,
    seal(value) {
      if (key === undefined) return value;
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const sealed = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
      return marker + Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64');
    },
    open(value) {
      if (typeof value !== 'string' || !value.startsWith(marker)) return value;
      if (key === undefined) {
        throw new AppError('FLAGSTREAM_ERR_CONFIG', 'the stored configuration holds encrypted secrets: set FLAGSTREAM_ENCRYPTION_KEY to the key they were written with');
      }
      const raw = Buffer.from(value.slice(marker.length), 'base64');
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      try {
        return JSON.parse(Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8')) as unknown;
      } catch (cause) {
        throw new AppError('FLAGSTREAM_ERR_CONFIG', 'cannot decrypt a stored secret: FLAGSTREAM_ENCRYPTION_KEY differs from the key it was written with', { cause });
      }
    },
  };
}
