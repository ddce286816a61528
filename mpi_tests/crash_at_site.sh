#!/usr/bin/env bash
# Kills a 2-rank save at each file-system call of the commit protocol, then
# checks that a new job resumes from a complete checkpoint (step 1, or step
# 2 once `latest` was replaced) and that no staging directory survives.
# usage: crash_at_site.sh MPIEXEC BINARY ENGINE SCRATCH
set -u
source "$(dirname "${BASH_SOURCE[0]}")/crash_common.sh"
crash_args crash_at_site "$@"
sites=(
  "write data|"  "fsync|.staging-"  "write|manifest.json"  "rename|manifest.json"
  "rename|global_step_2"  "fsync directory|"  "write|latest"  "rename|latest"
)
mkdir -p "$scratch"
failed=0 n=0
for site in "${sites[@]}"; do
  op=${site%%|*} part=${site#*|}
  n=$((n + 1))
  dir="$scratch/$engine-site$n"  # no site words in the path: rules match paths
  rm -rf "$dir" "$dir.log"
  "$mpiexec" -n 2 "$binary" save "$dir" "$engine" "$op" "$part" >"$dir.log" 2>&1
  rc=$?
  leftovers=$(staging_count "$dir")
  result=$("$mpiexec" -n 2 "$binary" check "$dir" "$engine" 2>&1 | grep resumed_step)
  after=$(staging_count "$dir")
  step=${result#resumed_step=}; step=${step%% *}
  verdict=ok
  if [[ $rc -eq 0 || $rc -eq 3 ]]; then verdict="FAIL (the save was not killed: rc=$rc)"
  elif [[ $result != *"values_ok=1"* ]]; then verdict="FAIL (resume: $result)"
  elif [[ $after -ne 0 ]]; then verdict="FAIL (staging left after resume)"
  elif [[ $step != 1 && $step != 2 ]]; then verdict="FAIL (resumed step $step)"
  fi
  printf '%-8s kill at %-16s %-16s staging before=%s after=%s resumed step %s: %s\n' \
    "$engine" "$op" "${part:-(any)}" "$leftovers" "$after" "$step" "$verdict"
  if [[ $verdict != ok ]]; then
    failed=$((failed + 1))
    echo "  the killed save's output ($dir.log), last lines:"
    tail -n 5 "$dir.log" | sed 's/^/    /'
  fi
done
echo "$(( ${#sites[@]} - failed )) passed, $failed failed"
[[ $failed -eq 0 ]]
