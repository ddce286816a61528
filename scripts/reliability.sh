#!/usr/bin/env bash
# Crash-injection trials with the example trainer: a run at R ranks saving
# at every step has one rank SIGKILLed from outside at a random moment; then
#   - `latest` (when there is one) names a checkpoint `floe verify` accepts;
#   - the next start (auto-resume) removes every staging leftover and runs
#     to the last step;
#   - that final checkpoint equals an uninterrupted run's (`floe diff`).
# Prints one line per trial and a summary; exits non-zero if any trial broke
# a promise. RELIABILITY.md holds the figures of the long run.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash scripts/reliability.sh [--trials N] [--ranks R] [--steps S]
                                   [--engine E] [--seed X] [--long] [--keep]

  --trials N   kill trials per engine (default 6: the CI run)
  --long       40 trials per engine at 4 ranks (the RELIABILITY.md figures)
  --ranks R    ranks per run (default 2)
  --steps S    training steps per run (default 12); a save at every step
  --engine E   hdf5, mpiio or both (default both)
  --seed X     seed of the trainer and of the kill times (default 7)
  --keep       keep the work directory (printed) for a post-mortem

Environment: BUILD_DIR (default build): where floe-train-example and floe are
built (or FLOE_TRAINER and FLOE_CLI: their paths); MPIEXEC (default mpirun).
USAGE
}

trials=6 ranks=2 steps=12 seed=7 keep=0
engines=(hdf5 mpiio)
while (($#)); do
  case "$1" in
    --trials) trials="$2"; shift ;;
    --ranks) ranks="$2"; shift ;;
    --steps) steps="$2"; shift ;;
    --engine) engines=("$2"); shift ;;
    --seed) seed="$2"; shift ;;
    --long) trials=40 ranks=4 ;;
    --keep) keep=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "reliability.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-build}"
[[ "${build}" = /* ]] || build="${root}/${build}"
trainer="${FLOE_TRAINER:-$(find "${build}" -name floe-train-example -type f -perm -u+x 2>/dev/null | head -1)}"
floe="${FLOE_CLI:-$(find "${build}/src/cli" -name floe -type f -perm -u+x 2>/dev/null | head -1)}"
[[ -n "${trainer}" ]] || { echo "reliability.sh: floe-train-example not built in ${build} (needs FLOE_WITH_TORCH=ON)" >&2; exit 1; }
[[ -n "${floe}" ]] || { echo "reliability.sh: floe not built in ${build}" >&2; exit 1; }

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_io=romio321
mpiexec="${MPIEXEC:-mpirun}"
work=$(mktemp -d "${TMPDIR:-/tmp}/floe-reliability.XXXXXX")
((keep)) || trap 'rm -rf "${work}"' EXIT
RANDOM=${seed}

train() {  # train ENGINE DIR [extra flags...]
  local engine=$1 dir=$2
  shift 2
  "${mpiexec}" -n "${ranks}" "${trainer}" --output-dir "${dir}" --engine "${engine}" \
    --steps "${steps}" --save-every-n-steps 1 --seed "${seed}" "$@"
}

# The trainer's ranks: mpirun's children running the trainer (the kernel
# keeps 15 characters of a command name).
ranks_of() { pgrep -P "$1" -x floe-train-exam || true; }

failed=0 total_kills=0 total_trials=0
for engine in "${engines[@]}"; do
  ref="${work}/${engine}-reference"
  # The uninterrupted run, timed: when its first checkpoint appears (start-up
  # ends) and when it ends. Kills land in between, where saves happen.
  start=$(date +%s%N)
  train "${engine}" "${ref}" >"${work}/${engine}-reference.log" 2>&1 &
  ref_pid=$!
  first_ms=""
  while kill -0 "${ref_pid}" 2>/dev/null; do
    if [[ -z "${first_ms}" && -f "${ref}/latest" ]]; then
      first_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    fi
    sleep 0.05
  done
  wait "${ref_pid}" ||
    { echo "reliability.sh: the uninterrupted ${engine} run failed:" >&2; tail -20 "${work}/${engine}-reference.log" >&2; exit 1; }
  ref_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  first_ms=${first_ms:-$((ref_ms / 2))}
  final="global_step_${steps}"
  [[ -f "${ref}/${final}/manifest.json" ]] || { echo "reliability.sh: no ${final} in ${ref}" >&2; exit 1; }
  echo "${engine}: uninterrupted run of ${steps} steps at ${ranks} ranks: ${ref_ms} ms (first checkpoint at ${first_ms} ms)"
  kills=0 finished_first=0 resumed_steps=()
  for ((t = 1; t <= trials; t++)); do
    dir="${work}/${engine}-trial${t}"
    verdict=ok
    # The kill moment follows the run's progress, not the clock (start-up
    # time varies with the machine's load): once checkpoint k is committed
    # (k = 0: once the first save has begun), wait a random part of one
    # step's time, then kill.
    k=$((RANDOM % steps))
    step_ms=$(( (ref_ms - first_ms) / steps + 1 ))
    extra_ms=$(( RANDOM % step_ms ))
    "${mpiexec}" -n "${ranks}" "${trainer}" --output-dir "${dir}" --engine "${engine}" \
      --steps "${steps}" --save-every-n-steps 1 --seed "${seed}" --auto-resume \
      >"${dir}.run1.log" 2>&1 &
    launcher=$!  # mpirun itself
    while kill -0 "${launcher}" 2>/dev/null; do
      if ((k == 0)); then
        compgen -G "${dir}/.staging-*" >/dev/null && break
      elif [[ -f "${dir}/latest" ]]; then
        now=$(<"${dir}/latest")
        now=${now#global_step_}
        [[ ${now} =~ ^[0-9]+$ ]] && ((now >= k)) && break
      fi
      sleep 0.02
    done
    sleep "$(awk -v ms="${extra_ms}" 'BEGIN { printf "%.3f", ms / 1000 }')"
    delay_ms="checkpoint ${k} + ${extra_ms}"
    mapfile -t pids < <(ranks_of "${launcher}")
    victim=""
    if ((${#pids[@]})); then
      victim=${pids[RANDOM % ${#pids[@]}]}
      kill -KILL "${victim}" 2>/dev/null || victim=""
    fi
    rc=0
    timeout 120 tail --pid="${launcher}" -f /dev/null || verdict="FAIL (the job did not end after the kill)"
    wait "${launcher}" || rc=$?
    if [[ -z "${victim}" || ${rc} -eq 0 ]]; then
      finished_first=$((finished_first + 1))
      what="run ended before the kill (${delay_ms} ms)"
    else
      kills=$((kills + 1))
      what="rank pid ${victim} killed at ${delay_ms} ms"
    fi
    # 1. `latest`, if any, names a checkpoint that verifies.
    latest_tag="(none)"
    if [[ -f "${dir}/latest" ]]; then
      latest_tag=$(<"${dir}/latest")
      if ! "${mpiexec}" -n "${ranks}" "${floe}" verify "${dir}/${latest_tag}" >"${dir}.verify.log" 2>&1; then
        verdict="FAIL (latest ${latest_tag} does not verify: ${dir}.verify.log)"
      fi
    fi
    staging_before=$( (find "${dir}" -maxdepth 1 -name '.staging-*' 2>/dev/null || true) | wc -l)
    # 2. The next start resumes and finishes, leaving no staging behind.
    if ! timeout 300 "${mpiexec}" -n "${ranks}" "${trainer}" --output-dir "${dir}" \
         --engine "${engine}" --steps "${steps}" --save-every-n-steps 1 --seed "${seed}" \
         --auto-resume >"${dir}.run2.log" 2>&1; then
      verdict="FAIL (the resumed run failed: ${dir}.run2.log)"
    fi
    staging_after=$( (find "${dir}" -maxdepth 1 \( -name '.staging-*' -o -name '.deleting-*' \
                        -o -name '.replaced-*' \) 2>/dev/null || true) | wc -l)
    ((staging_after == 0)) || verdict="FAIL (${staging_after} staging leftovers after the restart)"
    # 3. The final state equals the uninterrupted run's.
    if [[ ${verdict} == ok ]] &&
       ! "${floe}" diff "${ref}/${final}" "${dir}/${final}" >"${dir}.diff.log" 2>&1; then
      verdict="FAIL (final state differs: ${dir}.diff.log)"
    fi
    if [[ ${latest_tag} == global_step_* ]]; then resumed_steps+=("${latest_tag#global_step_}"); fi
    printf '%s trial %2d: %-48s latest=%-16s staging=%d->%d: %s\n' "${engine}" "${t}" \
      "${what}" "${latest_tag}" "${staging_before}" "${staging_after}" "${verdict}"
    [[ ${verdict} == ok ]] || failed=$((failed + 1))
  done
  echo "${engine}: ${trials} trials, ${kills} rank kills, ${finished_first} runs ended before the kill; resumed from steps: ${resumed_steps[*]:-(none)}"
  total_kills=$((total_kills + kills))
  total_trials=$((total_trials + trials))
done
echo "summary: ${total_trials} trials, ${total_kills} SIGKILLs, ${failed} failed"
((keep)) && echo "work directory: ${work}"
((failed == 0))
