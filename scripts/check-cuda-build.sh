#!/usr/bin/env bash
# Build-check of the `cuda` feature on a machine with no GPU and no CUDA toolkit.
#
#   scripts/check-cuda-build.sh [CARGO_ARGS...]     default: check -p rap --features cuda
#   scripts/check-cuda-build.sh env                 prints the exports (eval "$(... env)")
#
# NVIDIA's compiler and headers come from PyPI wheels (nvidia-cuda-nvcc, -runtime, -cccl, -crt,
# nvidia-nvvm, plus cuBLAS/cuRAND/NVRTC for linking), pinned to CUDA 13.0: the GPU machine's
# driver (580) runs PTX up to ISA 9.0 = CUDA 13.0, and cudarc 0.19 knows CUDA <= 13.4 only. They
# are installed once with pip into $RAP_CUDA_DIR (default /tmp/rap-cuda-13.0, outside the repo;
# about 0.3 GB for a check, 1.2 GB with the link libraries); a second run reuses them.
# candle-kernels' build script compiles its kernels with that nvcc (PTX, and a static library of
# the quantized-matmul kernels) for CUDA_COMPUTE_CAP (default 90: H100/H200) - that compile is
# most of the time. Cargo builds into $CARGO_TARGET_DIR (default /tmp/rap-cuda-target), never
# the shared target/, so the CPU build is left alone; remove that folder when done (several GB).
#
# `cargo check` needs no GPU, no driver and no CUDA library. A real build (`build`, `test
# --no-run`) links libcuda (the driver: a stub here, the real one where the binary runs),
# cuBLAS, cuRAND, NVRTC and cudart: the script makes the unversioned .so links the linker wants
# and a link-time stub libcuda.so (see make_libcuda_stub). Not part of .ci/run: it costs minutes.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cuda_dir="${RAP_CUDA_DIR:-/tmp/rap-cuda-13.0}"
root="$cuda_dir/nvidia/cu13"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/rap-cuda-target}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"

# The wheels, pinned to one CUDA release (13.0).
wheels=(
  "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-crt==13.0.88" "nvidia-nvvm==13.0.88"
  "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cccl==13.0.85"
)
link_wheels=(
  "nvidia-cublas==13.0.2.14" "nvidia-curand==10.4.0.35" "nvidia-cuda-nvrtc==13.0.88"
)

# One pip call for every wheel wanted: with --target, pip replaces the whole `nvidia/` folder
# the wheels share, so a second call would drop what the first installed.
pip_install() {
  mkdir -p "$cuda_dir"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
    --no-deps --target "$cuda_dir" --upgrade "$@" >&2
}

have_compiler() {
  [ -x "$root/bin/nvcc" ] && "$root/bin/nvcc" --version | grep -q 'release 13.0'
}

have_link_libs() {
  [ -e "$root/lib/libcublas.so.13" ] && [ -e "$root/lib/libcurand.so.10" ] &&
    [ -e "$root/lib/libnvrtc.so.13" ] && [ -e "$root/lib/libcudart.so.13" ]
}

install_compiler() {
  if ! have_compiler; then
    echo "installing nvcc and the CUDA 13.0 headers into $cuda_dir (pip)" >&2
    if have_link_libs; then
      pip_install "${wheels[@]}" "${link_wheels[@]}"
    else
      pip_install "${wheels[@]}"
    fi
  fi
}

# The linker wants libX.so; the wheels ship libX.so.N only.
link_unversioned() {
  local lib
  for lib in "$root"/lib/lib*.so.*; do
    [ -e "$lib" ] || continue
    local base="${lib%%.so.*}.so"
    [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
  done
}

# libcuda.so is the driver's library, which no wheel ships (a GPU machine has it, as
# libcuda.so.1). To link here: a stub with that soname defining every driver function cudarc's
# bindings declare (read from cudarc's source, so nothing is guessed), each an abort, in
# lib/stubs where the toolkit keeps its own stub for the same purpose (and where cudarc's build
# script points the linker). Only the linker sees it, never the loader: the binary loads the
# real driver's libcuda.so.1 where it runs.
make_libcuda_stub() {
  local stub="$root/lib/stubs/libcuda.so"
  [ -e "$stub" ] && return 0
  local version src
  version=$(awk '/^name = "cudarc"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' "$repo/Cargo.lock")
  (cd "$repo" && cargo fetch -q)
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$version" 2>/dev/null | head -1)
  if [ -z "$src" ] || [ ! -f "$src/src/driver/sys/mod.rs" ]; then
    echo "cudarc $version's source is not in the cargo registry; cannot make the libcuda stub" >&2
    return 1
  fi
  mkdir -p "$root/lib/stubs"
  {
    echo '#include <stdlib.h>'
    grep -o '^pub unsafe fn cu[A-Za-z0-9_]*' "$src/src/driver/sys/mod.rs" | awk '{print $4}' |
      sort -u | while read -r s; do echo "void $s(void) { abort(); }"; done
  } >"$root/lib/stubs/libcuda.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub.tmp" "$root/lib/stubs/libcuda.c"
  mv "$stub.tmp" "$stub"
}

install_link_libs() {
  if ! have_link_libs || ! have_compiler; then
    echo "installing nvcc, the CUDA 13.0 headers, cuBLAS, cuRAND and NVRTC into $cuda_dir (pip)" >&2
    pip_install "${wheels[@]}" "${link_wheels[@]}"
  fi
  link_unversioned
  make_libcuda_stub
}

print_env() {
  echo "export CUDA_ROOT='$root' CUDA_PATH='$root' CUDA_HOME='$root'"
  echo "export PATH='$root/bin':\"\$PATH\""
  echo "export CUDA_COMPUTE_CAP='$CUDA_COMPUTE_CAP' CARGO_TARGET_DIR='$CARGO_TARGET_DIR'"
  echo "export LIBRARY_PATH='$root/lib:$root/lib/stubs'\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
}

install_compiler
if [ "${1:-}" = env ]; then
  install_link_libs
  print_env
  exit 0
fi
eval "$(print_env)"
if [ $# -eq 0 ]; then
  set -- check -p rap --features cuda
fi
case "$1" in
  check | clippy | doc) ;;
  *) install_link_libs ;;
esac
cd "$repo"
start=$(date +%s)
echo "cargo $* (target dir $CARGO_TARGET_DIR, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, $(nvcc --version | grep release))" >&2
cargo "$@"
echo "cuda build-check passed in $(($(date +%s) - start)) s" >&2
