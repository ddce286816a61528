#!/usr/bin/env bash
# Kills rank 0 of a 2-rank job at each file-system call that an asynchronous
# save makes in the background (after save() returned), then checks that
# `latest` still names step 1, that a new job resumes step 1 with its
# values, and that no staging directory survives the resume.
# usage: async_crash.sh MPIEXEC BINARY ENGINE SCRATCH
set -u
source "$(dirname "${BASH_SOURCE[0]}")/crash_common.sh"
crash_args async_crash "$@"
sites=(
  "mkdir|.staging-"  "write data|"  "fsync|.staging-"  "write|manifest.json"
  "rename|manifest.json"  "rename|global_step_2"  "fsync directory|"  "write|latest"
  "rename|latest"
)
mkdir -p "$scratch"
failed=0 n=0
for site in "${sites[@]}"; do
  op=${site%%|*} part=${site#*|}
  n=$((n + 1))
  dir="$scratch/$engine-async$n"  # no site words in the path: rules match paths
  rm -rf "$dir" "$dir.returned" "$dir.log"
  "$mpiexec" -n 2 "$binary" save "$dir" "$engine" "$op" "$part" >"$dir.log" 2>&1
  rc=$?
  latest=$(cat "$dir/latest" 2>/dev/null)
  result=$("$mpiexec" -n 2 "$binary" check "$dir" "$engine" 2>&1 | grep resumed_step)
  after=$(staging_count "$dir")
  verdict=ok
  if [[ $rc -eq 0 || $rc -eq 3 ]]; then verdict="FAIL (the save was not killed: rc=$rc)"
  elif [[ ! -e $dir.returned ]]; then verdict="FAIL (killed before save() returned)"
  elif [[ $latest != global_step_1 ]]; then verdict="FAIL (latest is '$latest')"
  elif [[ $result != "resumed_step=1 values_ok=1" ]]; then verdict="FAIL (resume: $result)"
  elif [[ $after -ne 0 ]]; then verdict="FAIL (staging left after resume)"
  fi
  printf '%-6s kill at %-18s %-16s latest=%s, %s: %s\n' \
    "$engine" "$op" "${part:-(any)}" "$latest" "$result" "$verdict"
  if [[ $verdict != ok ]]; then
    failed=$((failed + 1))
    echo "  the killed save's output ($dir.log), last lines:"
    tail -n 5 "$dir.log" | sed 's/^/    /'
  fi
done
echo "$(( ${#sites[@]} - failed )) passed, $failed failed"
[[ $failed -eq 0 ]]
