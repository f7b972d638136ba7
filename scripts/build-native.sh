#!/usr/bin/env bash
# Builds the engine's native kernel addon (native/ -> native/build/Release/grpo_native.node):
#   1. when run as root, installs what is missing of libopenblas-dev, build-essential and python3
#      through apt (apt-get update first, only then);
#   2. runs node-gyp against the installed Node's own headers (--nodedir), never downloading any;
#   3. does nothing when the addon is newer than every source file (a second run takes ~0.1 s).
# A failed build is a warning, not an error (exit 0): the engine then falls back to stock wasm
# kernels, 10-30x slower. Set GRPO_REQUIRE_NATIVE=1 (CI does) to make it fail instead.
set -uo pipefail
cd "$(dirname "$0")/.."

log() { printf '[build-native] %s\n' "$*" >&2; }

addon=native/build/Release/grpo_native.node

give_up() {
  if [ "${GRPO_REQUIRE_NATIVE:-0}" = "1" ]; then
    log "error: $1"
    exit 1
  fi
  log "warning: $1"
  log "warning: the engine will use stock wasm kernels (10-30x slower training); fix: apt-get install libopenblas-dev build-essential python3 && npm run build:native"
  exit 0
}

# Up to date: the addon (and the rollout decoder beside it) exists and no source or build file is newer.
if [ -f "$addon" ] && [ -f native/build/Release/grpo_decode.node ] && [ -z "$(find native/binding.gyp native/src -newer "$addon" -print -quit 2>/dev/null)" ]; then
  exit 0
fi

multiarch=$(gcc -print-multiarch 2>/dev/null || true)
[ -n "$multiarch" ] || multiarch="$(uname -m)-linux-gnu"

missing=()
[ -f "/usr/include/$multiarch/openblas-pthread/cblas.h" ] || missing+=(libopenblas-dev)
{ command -v g++ >/dev/null && command -v make >/dev/null; } || missing+=(build-essential)
command -v python3 >/dev/null || missing+=(python3)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]} (apt-get)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2; then
      give_up "apt-get could not install ${missing[*]}"
    fi
  else
    give_up "missing ${missing[*]} (run as root to install them with apt-get, or install them yourself)"
  fi
fi

# The directory whose include/node holds this Node's headers: next to the running binary
# (official tarballs, nvm) or /usr (Debian's nodejs).
node_prefix=$(node -p 'require("path").resolve(process.execPath, "../..")')
nodedir=""
for dir in "$node_prefix" /usr /usr/local; do
  if [ -f "$dir/include/node/node_api.h" ]; then
    nodedir=$dir
    break
  fi
done
[ -n "$nodedir" ] || give_up "no Node headers (include/node/node_api.h) under $node_prefix, /usr or /usr/local; on Debian: apt-get install libnode-dev"

gyp=node_modules/.bin/node-gyp
[ -x "$gyp" ] || give_up "node-gyp is not installed (run npm install first)"

log "building native kernels (node-gyp, nodedir=$nodedir, $multiarch)"
if ! (cd native && "../$gyp" rebuild --nodedir="$nodedir" --loglevel=warn >&2); then
  give_up "node-gyp build failed (output above)"
fi
if ! node -e "require('./$addon').info()" >/dev/null 2>&1; then
  rm -f "$addon"
  give_up "the addon was built but does not load"
fi
log "built $addon"
