/**
 * `--env-file FILE`, as Docker reads it: one `KEY=VALUE` per line, `#` comments and blank lines
 * skipped, a bare `KEY` takes the value from the CLI's own environment (and is skipped when that
 * has none). Values are taken verbatim (no quotes removed, no expansion).
 */
import { readFileSync } from 'node:fs';
import { invalid } from '../../src/errors.js';

export function parseEnvFile(text: string, file: string, env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.replace(/^\s+/, '');
    if (line === '' || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    const key = eq < 0 ? line.trimEnd() : line.slice(0, eq);
    if (key === '' || /\s/.test(key)) throw invalid(`--env-file ${file}, line ${i + 1}: '${raw}' is not KEY=VALUE (a variable name has no spaces)`);
    if (eq < 0) {
      const v = env[key];
      if (v !== undefined) out[key] = v;
      return;
    }
    out[key] = line.slice(eq + 1);
  });
  return out;
}

/** Reads and parses each file in order (later files win). */
export function readEnvFiles(files: readonly string[], env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (e) {
      throw invalid(`--env-file ${f} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    Object.assign(out, parseEnvFile(text, f, env));
  }
  return out;
}
