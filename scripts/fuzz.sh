#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan, runs each
# for a bounded time and prints executions and coverage. Exits non-zero if
# a target finds a crash; the input is kept under the build directory, and
# belongs in fuzz/regressions/<target>/ once the bug is fixed.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash scripts/fuzz.sh [--seconds N | --long] [--no-build | --build-only] [TARGET...]

  --seconds N  run each target N seconds (default 30: the CI run)
  --long       run each target 600 seconds (the RELIABILITY.md figures)
  --no-build   use the fuzzers already built
  --build-only build the fuzzers, run nothing
  TARGET       safetensors, index, manifest (default: all three)

Environment: FUZZ_BUILD_DIR (default build-fuzz, relative to the repository
root), CC/CXX (default clang-14/clang++-14 when installed, else clang).
USAGE
}

seconds=30
build=1
build_only=0
targets=()
while (($#)); do
  case "$1" in
    --seconds)
      (($# >= 2)) || { usage >&2; exit 2; }
      seconds="$2"
      shift
      ;;
    --long) seconds=600 ;;
    --no-build) build=0 ;;
    --build-only) build_only=1 ;;
    -h | --help) usage; exit 0 ;;
    safetensors | index | manifest) targets+=("$1") ;;
    *) echo "fuzz.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
((${#targets[@]})) || targets=(safetensors index manifest)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
build_dir="${FUZZ_BUILD_DIR:-build-fuzz}"

if ((build)); then
  if [[ -z "${CXX:-}" ]]; then
    if command -v clang++-14 >/dev/null; then export CC=clang-14 CXX=clang++-14
    else export CC=clang CXX=clang++; fi
  fi
  command -v "${CXX}" >/dev/null ||
    { echo "fuzz.sh: ${CXX} not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
  generator=()
  [[ -f "${build_dir}/CMakeCache.txt" ]] || generator=(-G Ninja)
  cmake -S . -B "${build_dir}" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFLOE_BUILD_FUZZERS=ON -DFLOE_BUILD_TESTS=OFF -DFLOE_BUILD_CLI=OFF \
    -DFLOE_WITH_TORCH=OFF -DFLOE_WITH_CUDA=OFF >/dev/null
  cmake --build "${build_dir}" --target floe_fuzzers -j "$(nproc 2>/dev/null || echo 2)"
fi
((build_only)) && exit 0

summary="${build_dir}/fuzz-summary.txt"
printf '%-12s %8s %12s %10s %8s %8s %8s  %s\n' target seconds executions exec/s \
  cov features corpus result | tee "${summary}"
failed=0
for t in "${targets[@]}"; do
  bin="${build_dir}/fuzz/floe_fuzz_${t}"
  [[ -x "${bin}" ]] || { echo "fuzz.sh: ${bin} not built" >&2; exit 1; }
  # New inputs go to a working corpus under the build directory; the
  # committed seeds and past crashes are read, never written.
  work="${build_dir}/fuzz-corpus/${t}"
  artifacts="${build_dir}/fuzz-artifacts/${t}"
  log="${build_dir}/fuzz-${t}.log"
  mkdir -p "${work}" "${artifacts}"
  rc=0
  "${bin}" -max_total_time="${seconds}" -print_final_stats=1 -rss_limit_mb=2048 \
    -timeout=10 -dict=fuzz/json.dict -artifact_prefix="${artifacts}/" \
    "${work}" "fuzz/corpus/${t}" "fuzz/regressions/${t}" >"${log}" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "${log}" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "${log}" | tail -1)
  last=$(grep -E '^#[0-9]+' "${log}" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"${last}")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"${last}")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"${last}")
  result=ok
  if ((rc != 0)); then
    result="CRASH (rc=${rc}; input in ${artifacts}/, log ${log})"
    failed=$((failed + 1))
  fi
  printf '%-12s %8s %12s %10s %8s %8s %8s  %s\n' "${t}" "${seconds}" "${execs:-?}" \
    "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${result}" | tee -a "${summary}"
  if ((rc != 0)); then grep -E 'ERROR|SUMMARY|==[0-9]+==|runtime error|terminate' "${log}" | head -20 >&2 || true; fi
done
echo "summary: ${summary}"
if ((failed)); then
  echo "fuzz.sh: ${failed} target(s) crashed; fix the parser, then add the input to fuzz/regressions/<target>/" >&2
  exit 1
fi
