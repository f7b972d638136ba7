#!/usr/bin/env bash
# One idempotent set-up step, run by `npm test` and `npm run train` before anything else:
#   1. npm packages when node_modules is missing or older than package-lock.json (npm install
#      rather than npm ci: npm 11 here writes lock files without other platforms' optional
#      packages, which npm ci then rejects as out of sync);
#   2. the native OpenBLAS addon (scripts/build-native.sh installs libopenblas-dev and build
#      tools through apt when run as root and they are missing);
#   3. the TypeScript build into dist/.
# Re-running it on a set-up tree takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages"
  npm install --no-audit --no-fund >&2
fi

bash scripts/build-native.sh

if [ ! -f dist/cli.js ] || [ -n "$(find src -newer dist/.build-stamp -print -quit 2>/dev/null || echo changed)" ]; then
  log "compiling TypeScript (tsc)"
  node_modules/.bin/tsc -p tsconfig.json
  touch dist/.build-stamp
fi
