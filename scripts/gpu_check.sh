#!/usr/bin/env bash
# On a machine with a GPU, in a few minutes: builds Floe with CUDA, runs the
# CUDA tests (device tensors saved and loaded through pinned staging, sync
# and async, both resumable engines), then measures device-to-host staging
# throughput and how long save() blocks for a state on the GPU.
# Usage: bash scripts/gpu_check.sh [--bytes 4GiB] [--tensors 64] [--repeat 5]
#        [--dir SCRATCH]   (BUILD_DIR default: build-gpu; needs the packages
#        scripts/test.sh installs and the CUDA Toolkit: set CUDAToolkit_ROOT
#        when it is not in /usr/local/cuda)
set -euo pipefail
FLOE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${FLOE_ROOT}"
bytes=4GiB tensors=64 repeat=5 scratch=/tmp/floe-gpu-check
while (($#)); do
  case "$1" in
    --bytes) bytes=$2; shift ;;
    --tensors) tensors=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --dir) scratch=$2; shift ;;
    *) echo "gpu_check.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
BUILD_DIR="${BUILD_DIR:-build-gpu}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
gen=(); command -v ninja >/dev/null && [[ ! -f ${BUILD_DIR}/CMakeCache.txt ]] && gen=(-G Ninja)
cmake -S . -B "${BUILD_DIR}" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFLOE_WITH_CUDA=ON -DFLOE_WITH_TORCH=OFF -DFLOE_BUILD_CLI=OFF
cmake --build "${BUILD_DIR}" -j "$(nproc)" --target cuda_staging_test cuda_staging_bench
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_io=romio321
# The tests must run, not skip: a skip here means CUDA sees no GPU.
ctest --test-dir "${BUILD_DIR}" -R '^cuda_staging_test' --output-on-failure
out=$("${BUILD_DIR}/mpi_tests/cuda_staging_test" 2>&1); echo "${out}" | tail -3
if grep -q SKIPPED <<<"${out}"; then echo "gpu_check: CUDA tests skipped: no usable GPU" >&2; exit 1; fi
rm -rf "${scratch}"; mkdir -p "${scratch}"
mpirun --oversubscribe -np 1 "${BUILD_DIR}/mpi_tests/cuda_staging_bench" "${scratch}" \
  "${bytes}" "${tensors}" "${repeat}"
rm -rf "${scratch}"
