#!/usr/bin/env bash
# The whole test gate: system packages, lint, typecheck, every test (unit + integration as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
[ -d node_modules ] || npm ci
npm run lint
npm run typecheck
npx vitest run "$@"
