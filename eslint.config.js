// Lint rules that keep the shape the architecture describes (docs/ARCHITECTURE.md).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.flagstream/**', 'test/fixtures/**'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      // `any` only with a comment saying why (eslint-disable-next-line … -- reason).
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
      'no-restricted-exports': ['error', { restrictDefaultExports: { direct: true, named: true, defaultFrom: true, namedFrom: true, namespaceFrom: true } }],
    },
  },
  {
    // Connectors are declarative and pure: timers, retries, queues, metrics and the delivery core stay out.
    files: ['src/connectors/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['bullmq', 'ioredis', 'p-retry', 'prom-client', 'pino', 'node:timers', 'node:timers/promises'],
          patterns: [{ group: ['**/delivery/*', '**/worker/*', '**/stores/*', '**/queues/*'], message: 'connectors do not reach into the delivery core; use what connector.ts and http-classification.ts offer' }],
        },
      ],
    },
  },
  {
    // The one place the linter's own config needs a default export.
    files: ['eslint.config.js'],
    rules: { 'no-restricted-exports': 'off' },
  },
);
