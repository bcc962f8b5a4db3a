/**
 * The layering rule (DESIGN.md): src/ <- dns/, ingress/ <- mesh/. src/ imports none of the
 * others; dns/ and ingress/ never import each other or mesh/; mesh/ may import anything.
 *
 * Checked twice: the ESLint rule in eslint.config.js really fires on virtual files (so the
 * config cannot silently rot), and a scan of the actual source resolves every import specifier
 * (so the rule holds even where someone disabled the lint rule inline).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const LAYERS = ['src', 'dns', 'ingress', 'mesh'] as const;
type Layer = (typeof LAYERS)[number];

/** Which layers each layer may import from (besides itself). */
const ALLOWED: Record<Layer, readonly Layer[]> = {
  src: [],
  dns: ['src'],
  ingress: ['src'],
  mesh: ['src', 'dns', 'ingress'],
};

let eslint: ESLint;
beforeAll(() => {
  eslint = new ESLint({ cwd: ROOT });
});

/** The rule ids of the errors ESLint reports for `code` placed at `file` (relative to the root). */
async function lintErrors(file: string, code: string): Promise<Array<{ ruleId: string | null; message: string }>> {
  const [result] = await eslint.lintText(code, { filePath: join(ROOT, file) });
  expect(result, `ESLint returned no result for ${file}`).toBeDefined();
  return (result?.messages ?? []).filter((m) => m.severity === 2).map((m) => ({ ruleId: m.ruleId, message: m.message }));
}

const importing = (...specs: string[]): string =>
  specs.map((s, i) => `import * as m${i} from '${s}';\nexport const v${i} = m${i};\n`).join('');

describe('the layering lint rule', () => {
  const forbidden: Array<[file: string, spec: string, layer: Layer]> = [
    ['src/x.ts', '../mesh/manager/index.js', 'mesh'],
    ['src/x.ts', '../dns/server.js', 'dns'],
    ['src/x.ts', '../ingress/lb/index.js', 'ingress'],
    ['src/store/x.ts', '../../mesh/api/server.js', 'mesh'],
    ['src/x.ts', '../mesh/index.js', 'mesh'],
    ['dns/x.ts', '../ingress/y.js', 'ingress'],
    ['dns/x.ts', '../mesh/z.js', 'mesh'],
    ['dns/plugins/cache/x.ts', '../../../mesh/manager/index.js', 'mesh'],
    ['dns/plugins/x.ts', '../../ingress/lb/y.js', 'ingress'],
    ['ingress/x.ts', '../dns/y.js', 'dns'],
    ['ingress/x.ts', '../mesh/api/server.js', 'mesh'],
    ['ingress/lb/ipvs/x.ts', '../../../dns/y.js', 'dns'],
  ];
  it.each(forbidden)('%s may not import %s', async (file, spec, layer) => {
    const errors = await lintErrors(file, importing(spec));
    expect(errors).toEqual([{ ruleId: 'no-restricted-imports', message: expect.stringContaining(`may not import from ${layer}/`) as string }]);
  });

  it('reports each forbidden import of a file', async () => {
    const errors = await lintErrors('dns/x.ts', importing('../ingress/y.js', '../mesh/z.js', '../src/errors.js'));
    expect(errors.map((e) => e.ruleId)).toEqual(['no-restricted-imports', 'no-restricted-imports']);
  });

  it('also catches re-exports and side-effect imports', async () => {
    expect((await lintErrors('src/x.ts', `export { Manager } from '../mesh/manager/index.js';\n`)).map((e) => e.ruleId)).toEqual(['no-restricted-imports']);
    expect((await lintErrors('src/x.ts', `import '../mesh/manager/index.js';\n`)).map((e) => e.ruleId)).toEqual(['no-restricted-imports']);
  });

  const allowed: Array<[file: string, specs: string[]]> = [
    ['mesh/x.ts', ['../src/errors.js', '../dns/a.js', '../ingress/b.js']],
    ['mesh/manager/x.ts', ['../../src/errors.js', '../../dns/a.js', '../../ingress/b.js', '../api/server.js']],
    ['dns/x.ts', ['../src/errors.js']],
    ['dns/plugins/x.ts', ['../../src/model/types.js', '../chain.js', './cache.js']],
    ['ingress/x.ts', ['../src/errors.js', 'node:net']],
    ['src/x.ts', ['./errors.js', './store/types.js', 'node:crypto', 'ws']],
    ['src/store/x.ts', ['../errors.js', './types.js']],
  ];
  it.each(allowed)('%s may import %j', async (file, specs) => {
    expect(await lintErrors(file, importing(...specs))).toEqual([]);
  });
});

// ---- scan of the real source -----------------------------------------------------------------

function tsFiles(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return []; // a layer that does not exist yet
  }
  return entries.flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(p);
    return e.isFile() && /\.(m|c)?tsx?$/.test(e.name) ? [p] : [];
  });
}

/** Every module specifier in `code`: static imports, re-exports, side-effect and dynamic imports. */
function specifiers(code: string): string[] {
  const out: string[] = [];
  const patterns = [
    /\b(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) if (m[1]) out.push(m[1]);
  return out;
}

/** The top-level folder (relative to the root) a path is in. */
const layerOf = (abs: string): string => relative(ROOT, abs).split(sep)[0] ?? '';

describe('the source respects the layering rule', () => {
  it('the specifier scan finds every kind of import', () => {
    const code = [
      `import { a } from '../x/a.js';`,
      `import type {\n  B,\n  C,\n} from "../x/b.js";`,
      `export { d } from '../x/d.js';`,
      `export * from '../x/e.js';`,
      `import '../x/f.js';`,
      `const g = await import('../x/g.js');`,
    ].join('\n');
    expect(specifiers(code).sort()).toEqual(['../x/a.js', '../x/b.js', '../x/d.js', '../x/e.js', '../x/f.js', '../x/g.js']);
  });

  it('finds files to check', () => {
    expect(tsFiles(join(ROOT, 'src')).length).toBeGreaterThan(5);
  });

  const lower = LAYERS.filter((l) => l !== 'mesh');
  it.each(lower)('every import in %s/ stays within what the layer may use', (layer) => {
    const violations: string[] = [];
    for (const file of tsFiles(join(ROOT, layer))) {
      for (const spec of specifiers(readFileSync(file, 'utf8'))) {
        if (!spec.startsWith('.') && !spec.startsWith('/')) {
          // A package or node: builtin; but never a self-reference to the project by name.
          if (spec === 'shoal' || spec.startsWith('shoal/')) violations.push(`${relative(ROOT, file)}: ${spec}`);
          continue;
        }
        const target = layerOf(resolve(dirname(file), spec));
        if (target === layer) continue;
        if (!(LAYERS as readonly string[]).includes(target) || !(ALLOWED[layer] as readonly string[]).includes(target)) {
          violations.push(`${relative(ROOT, file)}: ${spec} (-> ${target}/)`);
        }
      }
    }
    expect(violations).toEqual([]);
  });
});
