#!/usr/bin/env bash
# The GPU check, for whoever next has a GPU machine for a few minutes: it needs no Node, npm or
# network there, only what `bash scripts/pack-device.sh` put in .device/ (carried beside the
# working tree) plus the machine's NVIDIA driver. From the repository root:
#
#   bash bench/gpu-check.sh                 # logs to $OUT (or ./gpu-check-out), ~6 minutes at most
#
# In order, each under its own time limit inside GPU_CHECK_SECONDS (default 330 s):
#   env.log      nvidia-smi, the Vulkan loader and ICD manifests, what was unpacked
#   doctor.log   grpo doctor: Vulkan, the WebGPU adapters, CUDA libraries, every backend loaded
#   multi-gpu.log  only with 2+ GPUs: which GPU `--device N` selects for every N (its PCI address
#                against nvidia-smi's index N), then --device 0 and --device 1 busy at once and
#                nvidia-smi's process list: one process per GPU (src/engine/vulkan-devices.ts)
#   bench.log    train step and sampling on webgpu, then on wasm with the native kernels (CPU);
#                `grpo bench step|sample` when the CLI has it, else dist-bench/bench/*.js
#   shape.log    with GPU_CHECK_MODEL_CONFIG=config.json: step (4 x 128) and sampling (8 x (64 + 64))
#                of that shape on webgpu and on the native CPU backend
#   train.log    grpo train, tiny preset, a few steps, learner and worker on webgpu
#   summary.txt  one line per part: exit status and seconds
# tfjs-node-gpu is not tried: its install downloads libtensorflow 2.9 (hundreds of MB, not
# carried) and it needs CUDA 11.2 / cuDNN 8 libraries, which doctor.log says are present or not.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-check-out}
WORK=${GPU_CHECK_DIR:-/tmp/grpo-gpu-check}
BUDGET=${GPU_CHECK_SECONDS:-330}
END=$((SECONDS + BUDGET))
mkdir -p "$OUT" "$WORK/bin"
: > "$OUT/summary.txt"
note() { printf '%s\n' "$*" | tee -a "$OUT/summary.txt"; }

# unxz / untar with python3 where xz is missing (python3's lzma is in the standard library)
unxz_to() { if command -v xz >/dev/null; then xz -dc "$1" > "$2"; else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi; }
untar_xz() { if command -v xz >/dev/null; then xz -dc "$1" | tar -C "$2" -xf -; else python3 -c 'import sys,tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; fi; }

# run NAME LIMIT_S LOG CMD...: CMD under min(LIMIT_S, time left), appended to LOG, status noted
run() {
  local name=$1 limit=$2 logfile=$3
  shift 3
  local left=$((END - SECONDS - 5))
  if [ "$left" -lt 10 ]; then note "$name: skipped, no time left"; return 0; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  printf '\n===== %s (limit %ss): %s\n' "$name" "$limit" "$*" >> "$logfile"
  timeout -k 5 "$limit" "$@" >> "$logfile" 2>&1
  local rc=$?
  note "$name: exit $rc$([ "$rc" = 124 ] && echo ' (time limit)') in $((SECONDS - t0)) s"
  return 0
}

# ---- unpack (.device from scripts/pack-device.sh) ----
for f in node.xz app.tar.xz lib.tar.xz; do
  [ -f "$ROOT/.device/$f" ] || { note "missing .device/$f: run bash scripts/pack-device.sh where npm works, carry .device"; exit 1; }
done
t0=$SECONDS
[ -x "$WORK/bin/node" ] || { unxz_to "$ROOT/.device/node.xz" "$WORK/bin/node" && chmod +x "$WORK/bin/node"; }
[ -d "$WORK/app" ] || untar_xz "$ROOT/.device/app.tar.xz" "$WORK"
[ -d "$WORK/lib" ] || untar_xz "$ROOT/.device/lib.tar.xz" "$WORK"
note "unpacked in $((SECONDS - t0)) s: $(head -1 "$ROOT/.device/MANIFEST")"
export PATH="$WORK/bin:$PATH"
export LD_LIBRARY_PATH="$WORK/lib/blas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# the machine's own Vulkan loader when it has one, else the carried one (Debian's libvulkan1)
if ! ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1 ' >/dev/null; then LD_LIBRARY_PATH="$WORK/lib/vulkan:$LD_LIBRARY_PATH"; fi
# NVIDIA's Vulkan ICD (libGLX_nvidia.so.0) needs GLVND's libGLdispatch.so.0: the carried one when the machine has none
if ! ldconfig -p 2>/dev/null | grep 'libGLdispatch\.so\.0 ' >/dev/null && [ -d "$WORK/lib/glvnd" ]; then LD_LIBRARY_PATH="$WORK/lib/glvnd:$LD_LIBRARY_PATH"; fi
# NVIDIA's container mount: its ICD manifest is off the loader's search path, its libraries too
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && ! ls /etc/vulkan/icd.d/nvidia*.json /usr/share/vulkan/icd.d/nvidia*.json >/dev/null 2>&1 \
  && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [ -d "$d" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"; done
export GRPO_TOKEN=
APP=$WORK/app
GRPO=(node "$APP/dist/cli.js")

{
  echo "node $(command -v node) $(node --version); $(uname -a)"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-} VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-}"
  nvidia-smi 2>&1 | head -20
  ldconfig -p 2>/dev/null | grep -i -E 'vulkan|libcudart|libcudnn|GLX_nvidia' | head -20
  ls -l /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1
  cat "$ROOT/.device/MANIFEST"
} > "$OUT/env.log" 2>&1

run doctor 60 "$OUT/doctor.log" "${GRPO[@]}" doctor

# ---- --device N on a machine with several GPUs: by PCI address through Mesa's device-select
# layer (needs mesa-vulkan-drivers >= 24 there; doctor.log says whether the layer is installed)
NGPU=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | wc -l)
if [ "${NGPU:-0}" -ge 2 ]; then
  cat > "$WORK/device-check.mjs" <<'JS'
// node device-check.mjs APP_DIR N SECONDS: selects --device N, prints the adapter, keeps the GPU busy
const [, , app, n, seconds] = process.argv;
const { initEngine } = await import(`${app}/dist/engine/backend.js`);
const { tf } = await import(`${app}/dist/engine/tf.js`);
const info = await initEngine({ backend: 'webgpu', device: Number(n), log: () => {} });
console.log(JSON.stringify({ device: Number(n), pid: process.pid, pci: info.adapter?.pci ?? null, adapter: info.adapter }));
const a = tf.randomNormal([2048, 2048]);
let k = 0;
for (const end = Date.now() + Number(seconds) * 1000; Date.now() < end; k++) { const c = tf.matMul(a, a); await c.data(); c.dispose(); }
console.log(JSON.stringify({ device: Number(n), matmuls: k }));
JS
  nvidia-smi --query-gpu=index,name,pci.bus_id --format=csv,noheader >> "$OUT/multi-gpu.log" 2>&1
  for ((n = 0; n < NGPU; n++)); do
    run "device $n" 40 "$OUT/multi-gpu.log" node "$WORK/device-check.mjs" "$APP" "$n" 0
    want=$(nvidia-smi -i "$n" --query-gpu=pci.bus_id --format=csv,noheader 2>/dev/null | tr 'A-F' 'a-f')
    got=$(grep -o "\"device\":$n,\"pid\":[0-9]*,\"pci\":\"[^\"]*\"" "$OUT/multi-gpu.log" | tail -1 | sed 's/.*"pci":"//; s/"$//')
    note "device $n: selected PCI ${got:-none}, nvidia-smi index $n is ${want: -12} ($([ -n "$got" ] && [ "$got" = "${want: -12}" ] && echo match || echo MISMATCH))"
  done
  # two workers' GPUs at once: nvidia-smi should show each process on its own GPU
  left=$((END - SECONDS - 5))
  if [ "$left" -gt 40 ]; then
    node "$WORK/device-check.mjs" "$APP" 0 20 >> "$OUT/multi-gpu.log" 2>&1 &
    p0=$!
    node "$WORK/device-check.mjs" "$APP" 1 20 >> "$OUT/multi-gpu.log" 2>&1 &
    p1=$!
    sleep 12
    { echo "pids: --device 0 = $p0, --device 1 = $p1"; nvidia-smi; } >> "$OUT/multi-gpu.log" 2>&1
    wait "$p0" "$p1"
    note "device 0 and 1 at once: see multi-gpu.log (nvidia-smi's process table, pids $p0 and $p1)"
  fi
fi

# benches: the CLI's when it has them (h9's grpo bench), else the dist-bench scripts
if "${GRPO[@]}" --help 2>/dev/null | grep -E '^ +bench( |$)' >/dev/null; then
  # the reference shape (the `small` preset: hidden 128, 4 layers) at its batch
  STEP=("${GRPO[@]}" bench step --model-size small --batch 32 --seq 64 --steps 5)
  SAMPLE=("${GRPO[@]}" bench sample --model-size small --batch 32 --prompt 16 --new 48)
else
  STEP=(node "$APP/dist-bench/bench/train-step.js" --steps 5 --warmup 2)
  SAMPLE=(node "$APP/dist-bench/bench/sample.js")
fi
run "bench step webgpu" 75 "$OUT/bench.log" "${STEP[@]}" --backend webgpu
run "bench sample webgpu" 60 "$OUT/bench.log" "${SAMPLE[@]}" --backend webgpu

# a real model's shape (random weights), when GPU_CHECK_MODEL_CONFIG names a Hugging Face config.json:
# a training step at 4 x 128 and KV-cache sampling of 8 x (64 + 64), on the GPU and on the CPU route
if [ -n "${GPU_CHECK_MODEL_CONFIG:-}" ] && [ "${STEP[2]:-}" = bench ]; then
  for backend in webgpu native; do
    run "shape step $backend" 150 "$OUT/shape.log" "${GRPO[@]}" bench step --model-config "$GPU_CHECK_MODEL_CONFIG" --batch 4 --seq 128 --steps 2 --backend "$backend"
    run "shape sample $backend" 90 "$OUT/shape.log" "${GRPO[@]}" bench sample --model-config "$GPU_CHECK_MODEL_CONFIG" --batch 8 --prompt 64 --new 64 --backend "$backend"
  done
fi

run "train webgpu" 120 "$OUT/train.log" "${GRPO[@]}" train --out "$WORK/run" --backend webgpu --model-size tiny \
  --steps 5 --sft-steps 50 --sft-batch-size 32 --workers 1 --worker-capacity 4 --eval-samples 32 \
  --prompts-per-step 8 --group-size 4 --task-options max_digits=1,max_depth=1 --save-interval 0
tail -n 8 "$WORK/run/summary.json" >> "$OUT/train.log" 2>/dev/null

run "bench step wasm" 40 "$OUT/bench.log" "${STEP[@]}" --backend wasm
run "bench sample wasm" 30 "$OUT/bench.log" "${SAMPLE[@]}" --backend wasm
note "tfjs-node-gpu: not tried (its libtensorflow 2.9 download cannot be carried; needs CUDA 11.2 + cuDNN 8: see doctor.log)"
note "done in ${SECONDS} s"
