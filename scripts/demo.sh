#!/usr/bin/env bash
# The main job: set Floe up (as scripts/test.sh does) and show it working:
# the `floe` command, then the example trainer at 4 ranks with periodic
# checkpoints, a crash on purpose, an automatic resume to the end, an HF
# safetensors export, and `floe list` / `floe verify` of what it wrote.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash scripts/demo.sh [--no-install]

  --no-install   do not install Debian packages

Environment: FLOE_DEMO_DIR (output, default /tmp/floe-demo), BUILD_DIR
(default: build), FLOE_CMAKE_ARGS (extra configure arguments),
FLOE_BUILD_TARGETS (default: floe_cli floe_train_example).
USAGE
}

install=install
while (($#)); do
  case "$1" in
    --no-install) install=no-install ;;
    -h | --help) usage; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

FLOE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${FLOE_ROOT}"
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh

DEMO_DIR="${FLOE_DEMO_DIR:-/tmp/floe-demo}"
echo "Floe demo: output goes to ${DEMO_DIR}"

# Runs a command under mpirun with settings a container or a laptop needs:
# root allowed, oversubscription, no CMA (ptrace is often forbidden).
floe_mpirun() {
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    OMPI_MCA_rmaps_base_oversubscribe=1 \
    OMPI_MCA_btl_vader_single_copy_mechanism=none \
    mpirun "$@"
}

demo_cli() {
  local floe="${BUILD_DIR}/src/cli/floe"
  [[ -x "${floe}" ]] || floe_die "${floe} was not built (FLOE_BUILD_CLI=OFF?)"
  floe_phase "demo: floe --version"
  "${floe}" --version
  floe_phase "demo: mpirun -np 2 floe --list-engines (rank 0 prints)"
  floe_mpirun -np 2 "${floe}" --list-engines
}

# The end-to-end run: 4 ranks train with a checkpoint every 10 steps, abort
# at step 37 (MPI_Abort, as a node failure would), resume from step 30 with
# the same command plus --auto-resume, finish at step 60, export safetensors.
demo_trainer() {
  local trainer="${BUILD_DIR}/src/examples/floe-train-example"
  local floe="${BUILD_DIR}/src/cli/floe"
  [[ -x "${trainer}" ]] ||
    floe_die "${trainer} was not built (configure with -DFLOE_WITH_TORCH=ON and LibTorch)"
  local ckpt="${DEMO_DIR}/checkpoints" hf="${DEMO_DIR}/hf-export"
  rm -rf "${ckpt}" "${hf}"
  local run=("${trainer}" --output-dir "${ckpt}" --engine hdf5 --steps 60
             --save-every-n-steps 10 --save-end-of-training --keep-last-n 3
             --hidden 512 --layers 4 --global-batch 24 --seed 1 --log-every 5)

  floe_phase "demo: train on 4 ranks, checkpoint every 10 steps, crash at step 37"
  local rc=0
  floe_mpirun -np 4 "${run[@]}" --crash-at-step 37 2>&1 | tee "${DEMO_DIR}/run1.log" || rc=$?
  ((rc != 0)) || floe_die "the run with --crash-at-step 37 exited 0"
  echo "demo: the job died as planned (exit ${rc}); latest = $(cat "${ckpt}/latest")"

  floe_phase "demo: the same command with --auto-resume: resume, finish, export HF"
  floe_mpirun -np 4 "${run[@]}" --auto-resume --export-hf "${hf}" 2>&1 |
    tee "${DEMO_DIR}/run2.log"

  floe_phase "demo: floe list ${ckpt}"
  "${floe}" list "${ckpt}"
  local tag
  tag="$(cat "${ckpt}/latest")"
  floe_phase "demo: mpirun -np 4 floe verify ${ckpt}/${tag}"
  floe_mpirun -np 4 "${floe}" verify "${ckpt}/${tag}"
  floe_phase "demo: the HF export in ${hf}"
  ls -l "${hf}"
  if [[ -x "${FLOE_ROOT}/.venv/bin/python" ]]; then
    "${FLOE_ROOT}/.venv/bin/python" - "${hf}" <<'PY'
import sys
from safetensors.numpy import load_file
tensors = load_file(sys.argv[1] + "/model.safetensors")
print("safetensors reads %d tensors: %s" % (len(tensors), ", ".join(
    "%s %s" % (k, list(v.shape)) for k, v in sorted(tensors.items())[:3])) + ", ...")
PY
  fi
}

# The demo runs the floe command and the trainer; the test suites are
# test.sh's to build.
FLOE_BUILD_TARGETS="${FLOE_BUILD_TARGETS:-floe_cli floe_train_example}"
floe_setup "${install}"
mkdir -p "${DEMO_DIR}"
demo_cli
demo_trainer
floe_phase "demo: done (output dir: ${DEMO_DIR})"
