#!/usr/bin/env bash
# CTest `trainer_bad_input`: an unknown engine, an output directory that
# cannot be written, --resume-from a path that is no checkpoint, a
# checkpoint of a different model, and an uneven --global-batch each stop
# every rank with a clear error before any training step, and leave the
# committed checkpoints as they were.
#
# Usage: check_bad_input.sh MPIEXEC TRAINER FLOE WORKDIR
set -euo pipefail
(($# == 4)) || { echo "usage: $0 MPIEXEC TRAINER FLOE WORKDIR" >&2; exit 2; }
MPIEXEC="$1" TRAINER="$2" FLOE="$3" WORK="$4"
# shellcheck source=mpi_tests/trainer/trainer_lib.sh
source "$(dirname "$0")/trainer_lib.sh"
rm -rf "${WORK}" && mkdir -p "${WORK}"

# refused NAME WANT_RC PATTERN: the last run exited WANT_RC, both ranks
# printed an error matching PATTERN, and no step ran.
refused() {
  ((RC == $2)) || { echo "${OUT}"; fail "$1: exited ${RC}, want $2"; }
  local r
  for r in 0 1; do
    expect "$1" "${OUT}" "^floe-train-example: error \\(rank ${r}\\): .*$3"
  done
  expect_not "$1" "${OUT}" '^step [0-9]+ loss'
  echo "ok: $1"
}

# A committed checkpoint to protect.
good="${WORK}/good"
train 2 --output-dir "${good}" --steps 4 --save-end-of-training "${SMALL[@]}"
((RC == 0)) || { echo "${OUT}"; fail "setup run exited ${RC}"; }
before="$(tree_sums "${good}")"

train 2 --output-dir "${WORK}/x" --engine no-such-engine --steps 4 "${SMALL[@]}"
refused "unknown engine" 2 'no-such-engine.*hdf5'

touch "${WORK}/a-file"
train 2 --output-dir "${WORK}/a-file/ckpt" --steps 4 "${SMALL[@]}"
refused "unwritable output dir" 1 "cannot create output directory ${WORK}/a-file/ckpt"

mkdir -p "${WORK}/not-a-checkpoint"
echo hello >"${WORK}/not-a-checkpoint/notes.txt"
train 2 --output-dir "${WORK}/y" --resume-from "${WORK}/not-a-checkpoint" --steps 4 "${SMALL[@]}"
refused "--resume-from a non-checkpoint" 1 "not-a-checkpoint"

train 2 --output-dir "${WORK}/z" --resume-from "${WORK}/does-not-exist" --steps 4 "${SMALL[@]}"
refused "--resume-from a missing path" 1 "does-not-exist"

# Different shapes (a wider model), then different names (more layers).
train 2 --output-dir "${good}" --auto-resume --steps 8 --save-end-of-training \
  --hidden 24 --layers 2 --global-batch 24 --seed 3
refused "a wider model" 1 'layers\.[0-9]+\.(weight|bias)'
train 2 --output-dir "${good}" --resume-from "${good}/global_step_4" --steps 8 \
  --hidden 16 --layers 3 --global-batch 24 --seed 3
refused "a deeper model" 1 'layers\.2\.(weight|bias)'

train 2 --output-dir "${good}" --auto-resume --steps 8 --hidden 16 --layers 2 --global-batch 25
refused "uneven --global-batch" 2 '--global-batch 25 does not split evenly over 2 ranks'

train 2 --output-dir "${good}" --steps 8 --no-such-flag "${SMALL[@]}"
refused "unknown flag" 2 'no-such-flag'

# A --config file one rank cannot read (a node-local path): every rank
# stops with exit 2 before train()'s first collective; before, rank 0 went
# on alone and waited there for ever.
echo '{"steps": 4}' >"${WORK}/config.json"
set +e
OUT="$(timeout 120 "${MPIEXEC}" -np 1 "${TRAINER}" --output-dir "${WORK}/c" \
  --config "${WORK}/config.json" "${SMALL[@]}" : -np 1 "${TRAINER}" --output-dir "${WORK}/c" \
  --config "${WORK}/missing.json" "${SMALL[@]}" 2>&1)"
RC=$?
set -e
((RC == 2)) || { echo "${OUT}"; fail "a config one rank cannot read: exited ${RC}, want 2"; }
expect "config on one rank" "${OUT}" \
  "^floe-train-example: error \\(rank 1\\): --config ${WORK}/missing.json: cannot open the file"
expect "config on one rank" "${OUT}" \
  '^floe-train-example: error \(rank 0\): another rank could not read its options'
echo "ok: a config one rank cannot read"

[[ "$(tree_sums "${good}")" == "${before}" ]] || fail "the committed checkpoint changed"
"${FLOE}" verify "${good}/global_step_4" >/dev/null || fail "floe verify of the committed checkpoint"
echo "PASS: every bad input refused on every rank before any step; checkpoints untouched"
