#!/usr/bin/env bash
# CTest `trainer_exact_resume`: 2 ranks x 20 steps straight, and 2 ranks that
# crash at step 13 (after the step-10 save) and auto-resume to step 20, end
# with bit-identical model and optimizer state (`floe diff` exits 0).
#
# Usage: check_exact_resume.sh MPIEXEC TRAINER FLOE WORKDIR ENGINE
set -euo pipefail
(($# == 5)) || { echo "usage: $0 MPIEXEC TRAINER FLOE WORKDIR ENGINE" >&2; exit 2; }
MPIEXEC="$1" TRAINER="$2" FLOE="$3" WORK="$4" ENGINE="$5"
# shellcheck source=mpi_tests/trainer/trainer_lib.sh
source "$(dirname "$0")/trainer_lib.sh"
rm -rf "${WORK}" && mkdir -p "${WORK}"

train 2 --output-dir "${WORK}/straight" --engine "${ENGINE}" --steps 20 \
  --save-end-of-training "${SMALL[@]}"
((RC == 0)) || { echo "${OUT}"; fail "straight run exited ${RC}"; }
expect straight "${OUT}" '^step 20 loss '

common=(--output-dir "${WORK}/crashed" --engine "${ENGINE}" --steps 20
        --save-every-n-steps 5 --save-end-of-training --crash-at-step 13 "${SMALL[@]}")
train 2 "${common[@]}"
((RC != 0)) || { echo "${OUT}"; fail "the run with --crash-at-step 13 exited 0"; }
expect crash "${OUT}" '^--crash-at-step 13: aborting before the update'
expect_not crash "${OUT}" '^step 13 loss'
[[ "$(cat "${WORK}/crashed/latest")" == global_step_10 ]] ||
  fail "after the crash, latest is '$(cat "${WORK}/crashed/latest")', want global_step_10"

# The same command line with --auto-resume: the crash does not fire again.
train 2 "${common[@]}" --auto-resume
((RC == 0)) || { echo "${OUT}"; fail "the resumed run exited ${RC}"; }
expect resume "${OUT}" '^resumed from global_step_10 \(step 10, saved by 2 ranks\)'
expect_not resume "${OUT}" '^step (1|2|3|4|5|6|7|8|9|10) loss'
expect resume "${OUT}" '^step 20 loss '

DIFF="$("${FLOE}" diff "${WORK}/straight/global_step_20" "${WORK}/crashed/global_step_20" 2>&1)" ||
  { echo "${DIFF}"; fail "floe diff (exact) of straight and resumed step 20 is not 0"; }
echo "${DIFF}"
expect diff "${DIFF}" '^result: equal'
# The comparison has teeth: step 15 differs from step 20.
if "${FLOE}" diff "${WORK}/crashed/global_step_15" "${WORK}/crashed/global_step_20" >/dev/null 2>&1; then
  fail "floe diff calls step 15 and step 20 equal"
fi
echo "PASS: crash at 13 + auto-resume == straight run, bit for bit (${ENGINE})"
