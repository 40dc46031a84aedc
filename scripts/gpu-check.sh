#!/usr/bin/env bash
# The `cuda` feature on a real NVIDIA GPU: the vision golden tests and the tiny-LLaVA golden test
# with RAP_DEVICE=cuda, then per-encoder images/s on the CPU and on the GPU (`rap models bench`).
#
# The lent GPU machine (H200, 16 cores, driver + nvcc + PyTorch's CUDA 13 libraries, no network,
# and no Rust toolchain as far as its description goes) cannot build `rap`. So, in two steps:
#
#   1. Here, on a CPU machine with network (a few tens of minutes on 2 cores; no device time):
#        scripts/gpu-check.sh prepare
#      builds `rap` and the rap-vision / rap-detect / rap-llm-local test binaries with `--features cuda`
#      (scripts/check-cuda-build.sh: nvcc and the CUDA 13.0 libraries from PyPI wheels, its own
#      target dir), and packs them, compressed, with the models the golden tests need, into
#      `.gpu/` (excluded from git through .git/info/exclude; the device tool carries up to 64 MiB).
#   2. One device call (about 3 to 6 minutes of device time after the machine's start):
#        run(command="bash scripts/gpu-check.sh run", carry=[".gpu"], timeout_s=540)
#      Results come back in $OUT: gpu-check.log, bench-cpu.json, bench-gpu.json.
#
# `run` also works where the machine has cargo: with no `.gpu/` it builds there (with the
# machine's nvcc, else nvcc from PyPI wheels when pip reaches a registry, else it says that
# neither is there and stops). Budget: one command at most 10 minutes, 15 minutes of device
# time per session; each step below is bounded (timeout) so the figures come back even if one
# hangs.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
pack="$repo/.gpu"
out="${OUT:-$repo/target/gpu-check}"
bench_seconds="${RAP_GPU_BENCH_SECONDS:-2}"

die() {
  echo "gpu-check: $*" >&2
  exit 1
}

# ---- step 1: build and pack (CPU machine) ---------------------------------------------------

# Executables of `cargo test --no-run` (JSON messages on stdout).
test_executables() {
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["manifest_path"], m["executable"], sep="\t")
'
}

# Builds `rap` and the rap-vision / rap-detect / rap-llm-local test binaries with `--features cuda` into
# $CARGO_TARGET_DIR and copies them, stripped, into $1 with $1/tests.tsv (binary, crate folder).
# One cargo invocation: another target selection can resolve the build scripts' features
# differently, and candle-kernels' nvcc compile (about 20 minutes on 2 cores) would run again.
# `rap`'s integration tests are built too: that is what builds the `rap` binary in it.
build_cuda_binaries() {
  local dest=$1 list
  mkdir -p "$dest"
  list=$(cargo test --no-run --message-format=json -p rap -p rap-vision -p rap-detect -p rap-llm-local \
    --features rap/cuda,rap-vision/cuda,rap-detect/cuda,rap-llm-local/cuda --lib --tests | test_executables |
    grep -v '^cli'$'\t') || die "cargo test --no-run --features cuda failed"
  [ -x "$CARGO_TARGET_DIR/debug/rap" ] || die "no rap binary in $CARGO_TARGET_DIR/debug"
  strip -o "$dest/rap" "$CARGO_TARGET_DIR/debug/rap"
  : >"$dest/tests.tsv"
  while IFS=$'\t' read -r name manifest path; do
    local base
    base="$(basename "$(dirname "$manifest")")-$name"
    strip -o "$dest/$base" "$path"
    # The crate folder relative to the repo: tests run there, as under cargo.
    echo -e "$base\t$(dirname "${manifest#"$repo"/}")" >>"$dest/tests.tsv"
  done <<<"$list"
}

prepare() {
  command -v xz >/dev/null || die "xz is needed to pack the binaries"
  local build="$repo/scripts/check-cuda-build.sh"
  eval "$("$build" env)" || die "the CUDA build environment could not be set up"
  cd "$repo" || exit 1
  local start=$SECONDS
  echo "building rap and the test binaries with --features cuda into $CARGO_TARGET_DIR" >&2
  local stage
  stage=$(mktemp -d)
  build_cuda_binaries "$stage"
  rm -rf "$pack" && mkdir -p "$pack/models" "$pack/target-tmp"
  grep -qs '^/.gpu/$' "$repo/.git/info/exclude" || echo '/.gpu/' >>"$repo/.git/info/exclude"
  # The binaries as one xz stream: they share most of their bytes (candle, its PTX and CUDA
  # kernels), which a 64 MiB dictionary stores once.
  mv "$stage/tests.tsv" "$pack/tests.tsv"
  ls -la "$stage" >&2
  tar -C "$stage" -cf - . | xz -9 -T1 >"$pack/bin.tar.xz"
  rm -rf "$stage"
  # Paths compiled into the test binaries (CARGO_MANIFEST_DIR, CARGO_TARGET_TMPDIR): recreated
  # there, pointing at the carried files.
  echo "$repo" >"$pack/build-repo-path"
  echo "$CARGO_TARGET_DIR" >"$pack/build-target-dir"
  # Inputs the golden tests fetch over the network or read beside the checkout: CenterNet
  # (npm) and EfficientNet-Lite0 (PyPI) weights, scikit-image's photos, two dreambooth photos.
  local models="${RAP_MODELS_DIR:-$repo/target/tmp/test-models}"
  for m in centernet efficientnet-lite0; do
    if [ -d "$models/$m" ]; then
      cp -r "$models/$m" "$pack/models/"
    else
      echo "note: $models/$m is not installed (run the rap-vision and rap-detect golden tests once); its test will skip there" >&2
    fi
  done
  if [ -d "$repo/target/tmp/scikit-image-0.26.0-data" ]; then
    cp -r "$repo/target/tmp/scikit-image-0.26.0-data" "$pack/target-tmp/"
  else
    echo "note: target/tmp/scikit-image-0.26.0-data is missing (run the CenterNet golden test once); it will skip there" >&2
  fi
  for p in dreambooth-dev/dog/00.jpg dreambooth-dev/candle/00.jpg; do
    mkdir -p "$pack/shared/datasets/$(dirname "$p")"
    cp "$repo/../shared/datasets/$p" "$pack/shared/datasets/$p" || die "../shared/datasets/$p is missing"
  done
  du -sh "$pack" >&2
  local size
  size=$(du -sm "$pack" | cut -f1)
  [ "$size" -lt 60 ] || echo "warning: .gpu is ${size} MiB; the device tool carries 64 MiB with the working tree" >&2
  echo "packed in $((SECONDS - start)) s: now run(command=\"bash scripts/gpu-check.sh run\", carry=[\".gpu\"], timeout_s=540)" >&2
}

# ---- step 2: on the GPU machine -------------------------------------------------------------

# Directories holding the CUDA 13 libraries the binaries need (cuBLAS, cuBLASLt, cuRAND, NVRTC,
# cudart): the toolkit's, else the ones PyTorch's wheels installed.
cuda_lib_dirs() {
  local dirs=() d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -e "$d/libcublas.so.13" ] && dirs+=("$d")
  done
  while IFS= read -r f; do
    dirs+=("$(dirname "$f")")
  done < <(timeout 60 find /usr/local /opt /usr/lib /usr/lib64 /root \
    \( -name 'libcublas.so.13' -o -name 'libcurand.so.10' -o -name 'libnvrtc.so.13' \
    -o -name 'libcudart.so.13' -o -name 'libcublasLt.so.13' \) -print 2>/dev/null | sort -u)
  printf '%s\n' "${dirs[@]}" | awk '!seen[$0]++' | paste -sd:
}

build_there() {
  command -v cargo >/dev/null || die "no prebuilt .gpu/ was carried and this machine has no cargo: run 'scripts/gpu-check.sh prepare' on the CPU machine first and carry .gpu"
  if ! command -v nvcc >/dev/null; then
    if ! timeout 20 python3 -m pip download --no-deps -q -d /tmp/pipcheck nvidia-cuda-nvcc==13.0.88 >/dev/null 2>&1; then
      die "no nvcc here and pip reaches no registry: neither the CUDA toolkit nor its wheels are available"
    fi
    eval "$("$repo/scripts/check-cuda-build.sh" env)"
  fi
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/rap-cuda-target}"
  cd "$repo" || exit 1
  build_cuda_binaries /tmp/gpu-bin
}

run_there() {
  mkdir -p "$out"
  exec > >(tee "$out/gpu-check.log") 2>&1
  local t0=$SECONDS
  echo "== machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader ||
    die "nvidia-smi failed: no usable NVIDIA driver"
  nproc
  command -v nvcc >/dev/null && nvcc --version | grep release
  local bin=/tmp/gpu-bin
  rm -rf "$bin" && mkdir -p "$bin"
  if [ -f "$pack/bin.tar.xz" ]; then
    xz -dc "$pack/bin.tar.xz" | tar -C "$bin" -xf - || die "cannot unpack .gpu/bin.tar.xz"
    cp "$pack/tests.tsv" "$bin/tests.tsv"
    # The test binaries find their fixtures under the checkout and target dir they were built
    # in: make those paths lead to this checkout and the carried files.
    local built target
    built=$(cat "$pack/build-repo-path")
    target=$(cat "$pack/build-target-dir")
    if [ "$built" != "$repo" ] && [ ! -e "$built" ]; then
      mkdir -p "$(dirname "$built")" && ln -s "$repo" "$built"
    fi
    [ -e "$built/../shared/datasets" ] || { mkdir -p "$built/../shared" && cp -r "$pack/shared/datasets" "$built/../shared/"; }
    mkdir -p "$target/tmp" && cp -rn "$pack/target-tmp/." "$target/tmp/"
    export RAP_MODELS_DIR="$pack/models"
  else
    build_there
  fi
  local libs
  libs=$(cuda_lib_dirs)
  echo "CUDA libraries from: ${libs:-none found}"
  export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if ldd "$bin/rap" | grep 'not found'; then
    die "the binary's CUDA libraries are missing here (above)"
  fi

  local failed=0
  echo "== golden tests on the GPU (RAP_DEVICE=cuda)"
  while IFS=$'\t' read -r name dir; do
    local filter=()
    # rap-llm-local: the LLaVA golden tests only (the GGUF tests need models from the network):
    # the Llama and the Phi-3 (RAP-Phi3-mini) models, and Phi-3 quantized to Q8_0 / Q4K at load.
    case "$name" in rap-llm-local-*) filter=(llava) ;; esac
    echo "-- $name ${filter[*]}"
    # LLaVA in f32 on the GPU too (RAP_DTYPE), so its 1e-3 golden tolerance means the same.
    (cd "$repo/$dir" && RAP_DEVICE=cuda RAP_DTYPE=f32 timeout 240 "$bin/$name" "${filter[@]}") ||
      failed=1
  done <"$bin/tests.tsv"

  echo "== encoders, images/s on the CPU and on the GPU (zero weights at the real sizes; $bench_seconds s per figure)"
  local data
  data=$(mktemp -d)
  RAP_DEVICE=cpu timeout 200 "$bin/rap" --data-dir "$data" --json models bench --seconds "$bench_seconds" >"$out/bench-cpu.json" || failed=1
  RAP_DEVICE=cuda timeout 120 "$bin/rap" --data-dir "$data" --json models bench --seconds "$bench_seconds" >"$out/bench-gpu.json" || failed=1
  python3 - "$out/bench-cpu.json" "$out/bench-gpu.json" <<'EOF' || failed=1
import json, sys
cpu, gpu = (json.load(open(p)) for p in sys.argv[1:3])
g = {r["encoder"]: r["images_per_s"] for r in gpu["encoders"]}
print(f"{'encoder':<30}{'cpu b1':>9}{'cpu b8':>9}{'gpu b1':>9}{'gpu b8':>9}{'b8 x':>7}   images/s")
for r in cpu["encoders"]:
    c, d = r["images_per_s"], g.get(r["encoder"], {})
    c1, c8 = c["batch_1_images_per_s"], c["batch_8_images_per_s"]
    g1, g8 = d.get("batch_1_images_per_s", 0.0), d.get("batch_8_images_per_s", 0.0)
    print(f"{r['encoder']:<30}{c1:>9.1f}{c8:>9.1f}{g1:>9.1f}{g8:>9.1f}{g8 / c8 if c8 else 0:>7.1f}")
print(f"(cpu: {cpu['machine']}, device {cpu['device']}; gpu: device {gpu['device']}; {cpu['input']} input, preprocessing on the CPU included)")
EOF
  echo "== done in $((SECONDS - t0)) s; $([ $failed = 0 ] && echo 'all passed' || echo 'SOMETHING FAILED (above)')"
  return $failed
}

case "${1:-}" in
  prepare) prepare ;;
  run) run_there ;;
  *) die "usage: scripts/gpu-check.sh prepare (here) | run (on the GPU machine, carrying .gpu)" ;;
esac
