#!/usr/bin/env bash
# CTest `trainer_signals`: SIGUSR1 to one rank, SIGUSR1 to mpirun and SIGTERM
# to one rank each make the job write an emergency checkpoint at the next
# step boundary and exit 75; the checkpoint verifies and the next run resumes
# from it and finishes.
#
# Usage: check_signals.sh MPIEXEC TRAINER FLOE WORKDIR
set -euo pipefail
(($# == 4)) || { echo "usage: $0 MPIEXEC TRAINER FLOE WORKDIR" >&2; exit 2; }
MPIEXEC="$1" TRAINER="$2" FLOE="$3" WORK="$4"
# shellcheck source=mpi_tests/trainer/trainer_lib.sh
source "$(dirname "$0")/trainer_lib.sh"
rm -rf "${WORK}" && mkdir -p "${WORK}"

# run_and_signal NAME SIGNAL TARGET: starts a long run, waits for step 40,
# sends SIGNAL to TARGET (one-rank or mpirun), checks exit 75 and the
# emergency checkpoint, then resumes it to the end.
run_and_signal() {
  local name="$1" signal="$2" target="$3"
  local dir="${WORK}/${name}" log="${WORK}/${name}.log"
  local args=(--output-dir "${dir}" --steps 1000000 --log-every 10 "${SMALL[@]}")
  "${MPIEXEC}" -np 2 "${TRAINER}" "${args[@]}" >"${log}" 2>&1 &
  local job=$!
  local i
  for ((i = 0; i < 600; ++i)); do
    grep -q '^step 40 ' "${log}" && break
    kill -0 "${job}" 2>/dev/null || { cat "${log}"; fail "${name}: the job ended early"; }
    sleep 0.1
  done
  grep -q '^step 40 ' "${log}" || { kill -KILL "${job}"; cat "${log}"; fail "${name}: no step 40 within 60 s"; }
  if [[ "${target}" == mpirun ]]; then
    kill -s "${signal}" "${job}"
  else
    local rank_pid
    rank_pid="$(pgrep -P "${job}" -f floe-train-example | tail -n 1)"
    [[ -n "${rank_pid}" ]] || { kill -KILL "${job}"; fail "${name}: no rank process under mpirun ${job}"; }
    kill -s "${signal}" "${rank_pid}"
  fi
  local rc=0
  wait "${job}" || rc=$?
  local out
  out="$(cat "${log}")"
  ((rc == 75)) || { echo "${out}"; fail "${name}: exited ${rc}, want 75"; }
  expect "${name}" "${out}" '^stop signal at the boundary of step [0-9]+: writing an emergency checkpoint'
  expect "${name}" "${out}" '^save step [0-9]+ \(emergency\): blocked '
  local step tag
  step="$(sed -nE 's/^save step ([0-9]+) \(emergency\).*/\1/p' <<<"${out}")"
  tag="$(cat "${dir}/latest")"
  [[ "${tag}" == "global_step_${step}" ]] || fail "${name}: latest is '${tag}', emergency save was step ${step}"
  "${FLOE}" verify "${dir}/${tag}" >/dev/null || fail "${name}: floe verify ${dir}/${tag} failed"

  train 2 --output-dir "${dir}" --steps $((step + 5)) --auto-resume --save-end-of-training "${SMALL[@]}"
  ((RC == 0)) || { echo "${OUT}"; fail "${name}: the resumed run exited ${RC}"; }
  expect "${name} resume" "${OUT}" "^resumed from global_step_${step} "
  expect "${name} resume" "${OUT}" "^step $((step + 1)) loss "
  expect "${name} resume" "${OUT}" "^done: step $((step + 5))"
  echo "PASS: ${name}: ${signal} to ${target} -> emergency checkpoint at step ${step}, exit 75, resumed"
}

run_and_signal usr1_one_rank USR1 one-rank
run_and_signal usr1_mpirun USR1 mpirun
run_and_signal term_one_rank TERM one-rank
