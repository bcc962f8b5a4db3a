/**
 * Answers names the {@link Registry} knows, for the request's scope; passes everything else on.
 *
 * Answers are prepared as bytes once per (scope, type, name) and registry version
 * (`prepared.ts`), including "not ours" verdicts, so a repeated query costs three map gets and
 * a copy. Any registry change bumps its version and drops every prepared answer at once (O(1):
 * the maps are replaced, not walked); the number of prepared entries is bounded.
 */
import type { Plugin } from '../../handler.js';
import type { Registry } from '../../registry.js';
import { prepare, render, type Prepared } from './prepared.js';

/** Options of {@link registryAnswers}. */
export interface RegistryAnswersOptions {
  /** Bound on prepared entries (answers and "not ours" verdicts) before starting over. Default 50000. */
  maxPrepared?: number;
}

type ByName = Map<string, Prepared | null>;

/** The registry plugin: answers from `registry`, else `next`. */
export function registryAnswers(registry: Registry, options: RegistryAnswersOptions = {}): Plugin {
  const max = options.maxPrepared ?? 50_000;
  let version = -1;
  let count = 0;
  // scope key -> qtype -> name key -> prepared answer, or null for "not in the registry".
  let prepared = new Map<string, Map<number, ByName>>();
  return (next) => (req) => {
    const q = req.query;
    if (!q) return next(req);
    if (registry.version !== version || count >= max) {
      version = registry.version;
      prepared = new Map();
      count = 0;
    }
    let byType = prepared.get(req.scope.key);
    if (!byType) prepared.set(req.scope.key, (byType = new Map()));
    let byName = byType.get(q.qtype);
    if (!byName) byType.set(q.qtype, (byName = new Map()));
    let p = byName.get(q.name);
    if (p === undefined) {
      const a = registry.lookup(req.scope.networks, q.name, q.qtype);
      p = a ? prepare(a, q, req.msg) : null;
      byName.set(q.name, p);
      count++;
    }
    return p === null ? next(req) : render(req, q, p);
  };
}
