#!/usr/bin/env bash
# On a machine with a GPU, in a few minutes: builds Floe with CUDA, runs the
# CUDA tests at 1 and 2 ranks (device tensors saved and loaded through pinned
# staging, sync and async, both resumable engines), then measures
# device-to-host staging throughput and how long save() blocks for a state on
# the GPU.
# Usage: bash scripts/gpu_check.sh [--bytes 4GiB] [--tensors 64] [--repeat 5]
#        [--ranks 1] [--dir SCRATCH] [--build-only | --prebuilt BIN_DIR]
#   BUILD_DIR default: build-gpu. Building needs the packages scripts/test.sh
#   installs and the CUDA Toolkit (set CUDAToolkit_ROOT when it is not in
#   /usr/local/cuda). --build-only stops after the build (for
#   scripts/gpu_bundle.sh, on a machine without a GPU); --prebuilt runs the
#   test and benchmark binaries found in BIN_DIR instead of building (what a
#   bundle's run.sh does).
set -euo pipefail
FLOE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bytes=4GiB tensors=64 repeat=5 ranks=1 scratch=/tmp/floe-gpu-check build_only=0 bin=
while (($#)); do
  case "$1" in
    --bytes) bytes=$2; shift ;;
    --tensors) tensors=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --ranks) ranks=$2; shift ;;
    --dir) scratch=$2; shift ;;
    --build-only) build_only=1 ;;
    --prebuilt) bin=$2; shift ;;
    *) echo "gpu_check.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z ${bin} ]]; then
  cd "${FLOE_ROOT}"
  BUILD_DIR="${BUILD_DIR:-build-gpu}"
  gen=(); command -v ninja >/dev/null && [[ ! -f ${BUILD_DIR}/CMakeCache.txt ]] && gen=(-G Ninja)
  cmake -S . -B "${BUILD_DIR}" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFLOE_WITH_CUDA=ON -DFLOE_WITH_TORCH=OFF -DFLOE_BUILD_CLI=OFF
  cmake --build "${BUILD_DIR}" -j "$(nproc)" --target cuda_staging_test cuda_staging_bench
  ((build_only)) && exit 0
  bin="${BUILD_DIR}/mpi_tests"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_io=romio321
# One node, shared memory only: no network transports to probe.
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
engines=2  # resumable engines: mpiio, hdf5
for np in 1 2; do
  out=$(mpirun --oversubscribe -np "${np}" "${bin}/cuda_staging_test" 2>&1) || {
    echo "${out}"; echo "gpu_check: CUDA tests failed at ${np} rank(s)" >&2; exit 1; }
  echo "${out}" | grep -E '^\[ +(OK|SKIPPED|FAILED) +\]|passed,'
  # The device tests must run, not skip: a skip means CUDA sees no GPU
  # (rank 0 prints one line per test, after every rank has its verdict).
  ran=$(grep -c '^\[       OK \] Engines/CudaEngines.SavesAndLoadsDeviceTensors' <<<"${out}" || true)
  if ((ran != engines)); then
    echo "${out}" | grep -E 'no GPU' | sort -u || true
    echo "gpu_check: device tests passed ${ran} of ${engines} at ${np} rank(s)" >&2
    exit 1
  fi
done
echo "gpu_check: device tests passed at 1 and 2 ranks"
rm -rf "${scratch}"; mkdir -p "${scratch}"
mpirun --oversubscribe -np "${ranks}" "${bin}/cuda_staging_bench" "${scratch}" \
  "${bytes}" "${tensors}" "${repeat}"
rm -rf "${scratch}"
