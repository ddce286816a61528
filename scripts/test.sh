#!/usr/bin/env bash
# Builds Floe and runs every test: installs missing Debian packages,
# configures (Ninja, BUILD_DIR, default build/), builds, runs ctest.
# Safe to rerun; exits non-zero on the first failure.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash scripts/test.sh [--no-install] [--build-only] [-R REGEX] [--stage S]

  --no-install   do not install Debian packages (a cluster, or already set up)
  --build-only   configure and build, run no tests
  -R REGEX       run only the tests whose names match REGEX (ctest -R)
  --stage S      main (default): the build and every test;
                 asan: every test again under AddressSanitizer + UBSan
                   (build-asan, no LibTorch);
                 tsan: the suites that start threads (asynchronous save,
                   load's checksum thread) under ThreadSanitizer (build-tsan);
                 fuzz: each libFuzzer target for 30 s (scripts/fuzz.sh);
                 crash: SIGKILL trials with the example trainer
                   (scripts/reliability.sh, short run; needs the main build);
                 all: main, crash, fuzz, asan, tsan in turn, with each
                   one's time

Environment: BUILD_DIR (default: build, relative to the repository root),
FLOE_CMAKE_ARGS (extra configure arguments, e.g. "-DFLOE_WITH_TORCH=OFF"),
FLOE_MIN_FREE_GIB (default 3: stop at once when the disk has less free;
0: no check).
USAGE
}

install=install
build_only=0
regex=""
stage=main
while (($#)); do
  case "$1" in
    --no-install) install=no-install ;;
    --build-only) build_only=1 ;;
    -R)
      (($# >= 2)) || { usage >&2; exit 2; }
      regex="$2"
      shift
      ;;
    --stage)
      (($# >= 2)) || { usage >&2; exit 2; }
      stage="$2"
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "test.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

FLOE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${FLOE_ROOT}"

# Stages other than main: scripts/lib/stages.sh (sanitizers, fuzzing).
case "${stage}" in
  main) ;;
  asan | tsan | fuzz | crash | all)
    # shellcheck source=scripts/lib/stages.sh
    source scripts/lib/stages.sh
    floe_run_stage "${stage}" "${install}" "${build_only}" "${regex}"
    exit $?
    ;;
  *) echo "test.sh: unknown stage '${stage}'" >&2; usage >&2; exit 2 ;;
esac
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh

floe_setup "${install}"

if ((build_only)); then
  floe_phase "test: skipped (--build-only)"
  exit 0
fi

ctest_args=(--test-dir "${BUILD_DIR}" --output-on-failure -j "$(floe_nproc)")
if [[ -n "${regex}" ]]; then ctest_args+=(-R "${regex}"); fi
floe_phase "test: ctest ${ctest_args[*]}"
ctest "${ctest_args[@]}"
floe_phase "done: all tests passed"
