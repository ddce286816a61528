#!/usr/bin/env bash
# slurm/train.sbatch on a real (single-node) Slurm: submit a 2-rank training
# job, send the batch shell SIGUSR1 while it trains (as --signal=B:USR1@N
# does before the time limit), and check that
#   1. the ranks commit an emergency checkpoint and exit with 75,
#   2. the script requeues the job and the rerun sees SLURM_RESTART_COUNT=1,
#   3. the rerun resumes from that checkpoint and finishes at the last step,
#   4. `floe verify` passes on the emergency and the final checkpoints,
#   5. the MPI-IO hint variables reached the engine (its alignment is in
#      the manifest; the other hints were accepted),
#   6. no process of the job is left behind,
#   7. slurm/export_hf.sbatch exports the newest checkpoint of the training
#      folder to safetensors that `floe verify` accepts.
# The cluster comes from scripts/slurm_local.sh and is stopped on exit.
#
# usage: check_slurm_requeue.sh ROOT LAUNCHER ENGINE TRAINER FLOE WORKDIR
#   ROOT      the repository (scripts/slurm_local.sh, slurm/train.sbatch)
#   LAUNCHER  srun or mpirun (train.sbatch's FLOE_LAUNCHER)
#   ENGINE    hdf5 or mpiio (train.sbatch's FLOE_ENGINE)
#   TRAINER   floe-train-example
#   FLOE      the floe command
#   WORKDIR   scratch folder (emptied first)
# Exit status: 0 pass, 1 fail, 77 skipped (Slurm cannot start here).
set -uo pipefail

root=$1 launcher=$2 engine=$3 trainer=$4 floe=$5 work=$6
# Enough steps that the first run is still training when the signal comes:
# each step sleeps 10 ms (--step-delay-ms), so the first run takes at least
# 6 s. Without the sleep a step took 1.7-50 ms, idle to loaded, and on an
# idle machine all 600 steps were done (1 s) before the signal arrived, the
# trainer exited 0 and nothing was requeued (CI, 2026-11-29).
steps=${FLOE_SLURM_TEST_STEPS:-600}
alignment=65536
job_name=floe-requeue-${launcher}
ckpt_root=${work}/checkpoints
ckpt_dir=${ckpt_root}/${job_name}
job_out=${work}/job.out
t0=${SECONDS}

note() { printf '[%3ds] %s\n' $((SECONDS - t0)) "$*"; }
fail() {
  note "FAIL: $*"
  if [[ -f "${job_out}" ]]; then
    echo "---- job output (${job_out}), last 60 lines ----"
    tail -n 60 "${job_out}"
  fi
  [[ -n "${job:-}" ]] && scontrol show job "${job}" 2>/dev/null | sed 's/^/    /'
  exit 1
}

if ((EUID != 0)); then
  echo "skipped: a local Slurm needs root (slurmd runs as root, munged as munge)"
  exit 77
fi
rm -rf "${work}"
mkdir -p "${work}" "${ckpt_root}"

# ---- the cluster ----
# Its folder is short, under /tmp: it holds Unix sockets (munge's,
# slurmstepd's), whose paths may not pass 107 bytes.
cluster=$(mktemp -d /tmp/floe-slurm-test.XXXXXX) || fail "mktemp failed"
export FLOE_SLURM_DIR=${cluster}
stop_cluster() {
  bash "${root}/scripts/slurm_local.sh" stop >"${work}/stop.log" 2>&1
  # Keep the daemons' logs with the test's files, then drop the cluster.
  mkdir -p "${work}/slurm-logs"
  cp "${cluster}"/log/*.log "${cluster}"/munge/*.log "${work}/slurm-logs/" 2>/dev/null
  rm -rf "${cluster}"
}
trap stop_cluster EXIT
if ! bash "${root}/scripts/slurm_local.sh" start >"${work}/start.log" 2>&1; then
  cat "${work}/start.log"
  echo "skipped: Slurm cannot start on this machine (above: scripts/slurm_local.sh start)"
  exit 77
fi
export SLURM_CONF=${cluster}/slurm.conf
note "slurm up: $(sinfo -h -o '%P %D %c %T') ($(sinfo --version))"

# Fields of `scontrol show job` (there is no accounting, so no sacct).
# job_field FIELD [JOB]: one field of `scontrol show job` (default: ${job}).
job_field() { scontrol -o show job "${2:-${job}}" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# Waits up to $1 seconds, polling every ${poll:-0.5} s, for "${@:2}" to
# succeed.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep "${poll:-0.5}"
  done
}
job_done() { [[ "$(job_field JobState "${1:-}")" =~ ^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY)$ ]]; }
requeued() { [[ "$(job_field Restarts)" == 1 ]]; }
training() { grep -Eq "${FLOE_SLURM_TEST_STEP_LINE:-^step [0-9]+}" "${job_out}" 2>/dev/null; }

# ---- submit ----
# A small model, one checkpoint at the end only, so that the emergency
# checkpoint is the only one in between.
trainer_args=(--steps "${steps}" --steps-per-epoch 1000000 --hidden 64 --layers 2
  --seed 7 --global-batch 24 --log-every 1 --save-end-of-training --keep-last-n 0
  --step-delay-ms 10)
job=$(FLOE_TRAINER="${trainer}" FLOE_LAUNCHER="${launcher}" FLOE_CKPT_ROOT="${ckpt_root}" \
  FLOE_ENGINE="${engine}" FLOE_ALIGNMENT="${alignment}" FLOE_STRIPING_FACTOR=1 \
  FLOE_STRIPING_UNIT=1MiB FLOE_CB_BUFFER_SIZE=4MiB FLOE_ROMIO_CB_WRITE=enable \
  OMP_NUM_THREADS=1 \
  sbatch --parsable -N 1 --ntasks-per-node=2 -t 10 -J "${job_name}" -o "${job_out}" \
  "${root}/slurm/train.sbatch" "${trainer_args[@]}") || fail "sbatch refused the job"
job=${job%%;*}
note "submitted job ${job}: ${launcher}, ${engine} engine, 2 ranks, ${steps} steps"

poll=0.1 wait_for 120 training || fail "the trainer logged no step within 120 s"
note "training; sending SIGUSR1 to the batch shell (scancel --signal=USR1 --batch ${job})"
scancel --signal=USR1 --batch "${job}" || fail "scancel --signal=USR1 failed"

# ---- emergency checkpoint and requeue ----
wait_for 120 requeued || fail "the job was not requeued within 120 s"
note "requeued: Restarts=$(job_field Restarts), state $(job_field JobState)"
grep -q 'trainer wrote an emergency checkpoint' "${job_out}" ||
  fail "train.sbatch did not see exit code 75 before the requeue"
[[ -s "${ckpt_dir}/latest" ]] || fail "no 'latest' in ${ckpt_dir} after the emergency checkpoint"
emergency=$(head -n 1 "${ckpt_dir}/latest")
emergency_step=${emergency#global_step_}
[[ "${emergency_step}" =~ ^[0-9]+$ ]] || fail "latest names '${emergency}', not global_step_<N>"
((emergency_step > 0 && emergency_step < steps)) ||
  fail "the emergency checkpoint is at step ${emergency_step}, not inside (0, ${steps})"
[[ -f "${ckpt_dir}/${emergency}/manifest.json" ]] || fail "${emergency} has no manifest.json"
grep -q "\"engine\":\"${engine}\"" "${ckpt_dir}/${emergency}/manifest.json" ||
  fail "${emergency} was not written by the ${engine} engine"
grep -q "\"alignment\":${alignment}[,}]" "${ckpt_dir}/${emergency}/manifest.json" ||
  fail "FLOE_ALIGNMENT=${alignment} did not reach the engine (manifest: $(grep -o '"alignment":[0-9]*' "${ckpt_dir}/${emergency}/manifest.json"))"
note "emergency checkpoint committed: ${emergency}"

# ---- the rerun ----
wait_for 300 job_done || fail "the requeued job did not finish within 300 s"
state=$(job_field JobState) exit_code=$(job_field ExitCode) restarts=$(job_field Restarts)
note "job ${job}: ${state}, exit code ${exit_code}, restarts ${restarts}"
[[ "${state}" == COMPLETED && "${exit_code}" == 0:0 ]] ||
  fail "the requeued job ended ${state} with exit code ${exit_code}"
[[ "${restarts}" == 1 ]] || fail "the job ran $((restarts + 1)) times, not twice"
grep -q 'job [0-9]* restart 1: start' "${job_out}" ||
  fail "the rerun did not log SLURM_RESTART_COUNT=1"
grep -q 'restart 1: trainer finished' "${job_out}" || fail "the rerun's trainer did not finish"
[[ "$(head -n 1 "${ckpt_dir}/latest")" == "global_step_${steps}" ]] ||
  fail "latest is '$(head -n 1 "${ckpt_dir}/latest")', not global_step_${steps}"

# The rerun resumed from the emergency checkpoint: it must mention it, and
# it must not have retrained from step 0 (no log line of step 1 after the
# restart).
sed -n '/restart 1: start/,$p' "${job_out}" >"${work}/rerun.out"
grep -q "${emergency}" "${work}/rerun.out" ||
  fail "the rerun's log does not name ${emergency} (did it resume?)"

for tag in "${emergency}" "global_step_${steps}"; do
  "${floe}" verify "${ckpt_dir}/${tag}" >"${work}/verify-${tag}.txt" 2>&1 ||
    { cat "${work}/verify-${tag}.txt"; fail "floe verify ${tag} failed"; }
  note "floe verify ${tag}: $(tail -n 1 "${work}/verify-${tag}.txt")"
done
"${floe}" list "${ckpt_dir}" | sed 's/^/    /'

# ---- export_hf.sbatch on the training folder: its newest checkpoint ----
hf_dir=${work}/hf
export_out=${work}/export.out
export_job=$(FLOE_CLI="${floe}" FLOE_LAUNCHER="${launcher}" \
  sbatch --parsable -N 1 --ntasks-per-node=2 -t 5 -J "floe-export-${launcher}" \
  -o "${export_out}" "${root}/slurm/export_hf.sbatch" "${ckpt_dir}" "${hf_dir}" --dtype BF16) ||
  fail "sbatch refused export_hf.sbatch"
export_job=${export_job%%;*}
wait_for 120 job_done "${export_job}" || fail "export job ${export_job} did not finish within 120 s"
state=$(job_field JobState "${export_job}") exit_code=$(job_field ExitCode "${export_job}")
[[ "${state}" == COMPLETED && "${exit_code}" == 0:0 ]] ||
  { cat "${export_out}"; fail "export job ${export_job} ended ${state} with exit code ${exit_code}"; }
grep -q "export-hf ${ckpt_dir}/global_step_${steps} " "${export_out}" ||
  { cat "${export_out}"; fail "export_hf.sbatch did not export global_step_${steps} (the latest)"; }
"${floe}" verify "${hf_dir}" >"${work}/verify-hf.txt" 2>&1 ||
  { cat "${work}/verify-hf.txt"; fail "floe verify of the export ${hf_dir} failed"; }
note "export_hf.sbatch (job ${export_job}): $(cd "${hf_dir}" && echo *) - floe verify ok"

# ---- nothing left behind ----
leftover=$(pgrep -a -f -- "--output-dir ${ckpt_dir}" || true)
[[ -z "${leftover}" ]] || fail "processes of the job are still running: ${leftover}"

note "PASS: signal -> ${emergency} -> requeue (restart 1) -> global_step_${steps}, verified"
echo "---- job output, without the per-step lines ----"
grep -v '^step [0-9]* loss' "${job_out}"
echo "---- export job output ----"
cat "${export_out}"
