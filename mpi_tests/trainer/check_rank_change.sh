#!/usr/bin/env bash
# CTest `trainer_rank_change`: a run that saves at step 6 on 2 ranks and
# resumes on NP ranks to step 9 matches a straight 2-rank run to step 9
# within 1e-4 (`floe diff --atol 1e-4`).
#
# Usage: check_rank_change.sh MPIEXEC TRAINER FLOE WORKDIR NP
set -euo pipefail
(($# == 5)) || { echo "usage: $0 MPIEXEC TRAINER FLOE WORKDIR NP" >&2; exit 2; }
MPIEXEC="$1" TRAINER="$2" FLOE="$3" WORK="$4" NP="$5"
# shellcheck source=mpi_tests/trainer/trainer_lib.sh
source "$(dirname "$0")/trainer_lib.sh"
rm -rf "${WORK}" && mkdir -p "${WORK}"

train 2 --output-dir "${WORK}/straight" --steps 9 --save-end-of-training "${SMALL[@]}"
((RC == 0)) || { echo "${OUT}"; fail "straight 2-rank run exited ${RC}"; }

train 2 --output-dir "${WORK}/resharded" --steps 6 --save-end-of-training "${SMALL[@]}"
((RC == 0)) || { echo "${OUT}"; fail "2-rank run to step 6 exited ${RC}"; }
train "${NP}" --output-dir "${WORK}/resharded" --steps 9 --save-end-of-training \
  --auto-resume "${SMALL[@]}"
((RC == 0)) || { echo "${OUT}"; fail "${NP}-rank resume exited ${RC}"; }
expect resume "${OUT}" "^floe-train-example: ${NP} ranks, "
expect resume "${OUT}" '^resumed from global_step_6 \(step 6, saved by 2 ranks\)'

DIFF="$("${FLOE}" diff --atol 1e-4 "${WORK}/straight/global_step_9" \
  "${WORK}/resharded/global_step_9" 2>&1)" ||
  { echo "${DIFF}"; fail "floe diff --atol 1e-4 of straight and ${NP}-rank resumed step 9 is not 0"; }
echo "${DIFF}"
expect diff "${DIFF}" '^result: equal'
echo "PASS: saved on 2 ranks at step 6, resumed on ${NP} to 9 == straight 2-rank run within 1e-4"
