#!/usr/bin/env bash
# Packs what bench/gpu-check.sh needs on a GPU machine that has no Node, no npm registry and no
# network into .device/ (git-ignored, under 60 MiB), so it can be carried there beside the
# working tree:
#   .device/node.xz        this machine's Node binary (the nodejs.org build is self-contained)
#   .device/app.tar.xz     package.json, dist/, dist-bench/, the native addon and the production
#                          node_modules, pruned (source maps, typings, browser bundles, other
#                          platforms' dawn.node dropped)
#   .device/lib.tar.xz     libopenblas + libgfortran for the native CPU kernels (the CPU figures
#                          beside the GPU ones), and the Vulkan loader libvulkan.so.1 (Debian's
#                          libvulkan1: the NVIDIA driver brings the ICD, not always the loader)
#   .device/MANIFEST       what went in, with sizes
#
#   bash scripts/pack-device.sh            # after npm install and npm run build:native
#
# Then on the GPU machine, from the repository root: bash bench/gpu-check.sh (see its header).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEST=$ROOT/.device
LIMIT_MIB=60
mkdir -p "$DEST"
log() { printf '[pack-device] %s\n' "$*" >&2; }

[ -d node_modules/webgpu ] || { log "node_modules/webgpu missing: run npm install first"; exit 1; }

# 1. Node: xz of the running binary, redone only when the binary changes (it takes minutes)
NODE_BIN=$(command -v node)
stamp="$("$NODE_BIN" --version) $(stat -c %s "$NODE_BIN")"
if [ ! -s "$DEST/node.xz" ] || [ "$(cat "$DEST/node.stamp" 2>/dev/null)" != "$stamp" ]; then
  log "compressing $NODE_BIN ($stamp)"
  xz -T0 -6 -c "$NODE_BIN" > "$DEST/node.xz.tmp"
  mv "$DEST/node.xz.tmp" "$DEST/node.xz"
  echo "$stamp" > "$DEST/node.stamp"
fi

# 2. Build the CLI and the benches
log "building dist/ and dist-bench/"
node_modules/.bin/tsc -p tsconfig.json
# bench/ is not type-checked by CI; gpu-check.sh needs only train-step.js and sample.js from it
node_modules/.bin/tsc -p bench || log "tsc -p bench reported errors (above); packing what it emitted"
for f in dist-bench/bench/train-step.js dist-bench/bench/sample.js; do
  [ -f "$f" ] || { log "$f was not built"; exit 1; }
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
app=$stage/app
mkdir -p "$app/native/build/Release"
cp package.json package-lock.json "$app/"
cp -r dist dist-bench "$app/"
for addon in grpo_native.node grpo_decode.node; do # the engine's kernels, the rollout decoder
  if [ -f "native/build/Release/$addon" ]; then
    cp "native/build/Release/$addon" "$app/native/build/Release/"
  else
    log "native/build/Release/$addon not built: the CPU figures there will lack it (npm run build:native)"
  fi
done

# 3. Production dependencies only, each package without its nested node_modules (those are
#    packages of their own in npm's list), read through a node_modules symlink if there is one
{ npm ls --omit=dev --all --parseable 2>/dev/null || true; } | tail -n +2 | sed "s|^$ROOT/||" | sort -u > "$stage/packages"
(
  cd "$ROOT"
  while read -r pkg; do
    find -L "$pkg" -path "$pkg/node_modules" -prune -o -type f -print
  done < "$stage/packages"
) > "$stage/files"
tar -C "$ROOT" -chf - -T "$stage/files" | tar -C "$app" -xf -

# 4. Prune what Node never loads from there
nm=$app/node_modules
find "$nm" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.md' -o -name '*.ts' \) ! -name 'LICENSE*' -delete
for pkg in "$nm"/@tensorflow/*; do
  main=$(node -p "require('$pkg/package.json').main" | sed 's|^\./||')
  # the CJS bundle named by "main" and the .wasm binaries are all Node reads; keep them
  find "$pkg/dist" -mindepth 1 \( -type f ! -path "$pkg/$main" ! -name '*.wasm' -print0 \) | xargs -0 rm -f
  find "$pkg/dist" -mindepth 1 -type d -empty -delete
  rm -rf "$pkg/src" "$pkg/scripts"
done
for plat in "$nm"/webgpu/dist/*; do
  [ "$(basename "$plat")" = "linux-$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/')" ] || rm -rf "$plat"
done
rm -rf "$nm"/webgpu/build

log "compressing the app ($(du -sh "$app" | cut -f1) unpacked)"
tar -C "$stage" -cf - app | xz -T0 -6 > "$DEST/app.tar.xz"

# 5. Shared libraries: OpenBLAS for the native addon (lib/blas), the Vulkan loader (lib/vulkan)
#    and GLVND's dispatch libraries (lib/glvnd), each used there only when the machine has none of
#    its own. NVIDIA's Vulkan ICD is libGLX_nvidia.so.0, which needs libGLdispatch.so.0: on an H200
#    machine without GLVND the loader reported "Could not get 'vkCreateInstance' via
#    'vk_icdGetInstanceProcAddr' for ICD libGLX_nvidia.so.0" and Dawn saw no adapter.
lib=$stage/lib
mkdir -p "$lib/blas" "$lib/vulkan" "$lib/glvnd"
if [ -f native/build/Release/grpo_native.node ]; then
  for so in libopenblas.so.0 libgfortran.so.5 libquadmath.so.0; do
    path=$(ldd native/build/Release/grpo_native.node | awk -v so="$so" '$1 == so { print $3 }')
    if [ -n "$path" ]; then cp -L "$path" "$lib/blas/$so"; fi
  done
fi
(
  cd "$stage"
  if apt-get download libvulkan1 libglvnd0 libglx0 libegl1 >/dev/null 2>&1; then
    for deb in *.deb; do dpkg -x "$deb" vk; done
    cp -L vk/usr/lib/*/libvulkan.so.1 "$lib/vulkan/"
    cp -L vk/usr/lib/*/libGLdispatch.so.0 vk/usr/lib/*/libGLX.so.0 vk/usr/lib/*/libEGL.so.1 "$lib/glvnd/"
  else
    log "apt-get download libvulkan1 libglvnd0 libglx0 libegl1 failed: the GPU machine must have its own Vulkan loader and GLVND"
  fi
)
tar -C "$stage" -cf - lib | xz -T0 -6 > "$DEST/lib.tar.xz"

{
  echo "packed $(date -u +%FT%TZ) from $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty') on $(uname -m)"
  echo "node $stamp"
  (cd "$stage" && find lib -type f -printf 'lib %p %s\n')
  du -b "$DEST"/*.xz | awk '{ print $2 " " $1 }'
} > "$DEST/MANIFEST"
total=$(du -cb "$DEST"/*.xz | tail -1 | cut -f1)
log "$(cat "$DEST/MANIFEST")"
log "total $((total / 1048576)) MiB in $DEST"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  log "over the ${LIMIT_MIB} MiB budget for carrying it"
  exit 1
fi
