// ESLint flat config. The layering rule below is the enforcement of DESIGN.md's import graph:
//   src/  <-  dns/, ingress/  <-  mesh/
// src/ imports none of the others; dns/ and ingress/ never import each other or mesh/.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const forbid = (layers) => ({
  'no-restricted-imports': ['error', {
    patterns: layers.map((l) => ({
      group: [`**/${l}/*`, `**/${l}`, `../${l}/*`, `../../${l}/*`],
      message: `layering (DESIGN.md): this folder may not import from ${l}/`,
    })),
  }],
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', Buffer: 'readonly', URL: 'readonly', setImmediate: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', queueMicrotask: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-console': 'off',
    },
  },
  { files: ['src/**/*.ts'], rules: forbid(['mesh', 'dns', 'ingress']) },
  { files: ['dns/**/*.ts'], rules: forbid(['mesh', 'ingress']) },
  { files: ['ingress/**/*.ts'], rules: forbid(['mesh', 'dns']) },
);
