#!/usr/bin/env bash
# The whole test gate: system packages, lint, typecheck, every test (unit + integration as root).
# Ends with one plain line "N passed, N failed, N skipped" read from vitest's JSON report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
[ -d node_modules ] || npm ci
npm run lint
npm run typecheck
mkdir -p .tmp
rc=0
npx vitest run --reporter=default --reporter=json --outputFile.json=.tmp/vitest.json "$@" || rc=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(".tmp/vitest.json", "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' || true
exit $rc
