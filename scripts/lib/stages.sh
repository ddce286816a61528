# shellcheck shell=bash
# The test stages beyond the main build (source it; scripts/test.sh --stage):
# the whole suite under AddressSanitizer + UndefinedBehaviorSanitizer, the
# suites that start threads under ThreadSanitizer, and a bounded fuzzing run.
# Each stage has its own build directory, so none disturbs the main build.
#
# Reads: ASAN_BUILD_DIR (default build-asan), TSAN_BUILD_DIR (build-tsan),
# FUZZ_BUILD_DIR (build-fuzz), FLOE_FUZZ_SECONDS (30 per target),
# FLOE_CRASH_TRIALS (3), FLOE_ASAN_LEAKS (0), FLOE_TSAN_TARGETS.

floe_sanitizer_dir() { echo "${FLOE_ROOT}/scripts/sanitizers"; }

# floe_sanitized_build INSTALL FLAGS [TARGET...]: configure BUILD_DIR (the
# first time, the flags enter its cache from CFLAGS/CXXFLAGS/LDFLAGS) and
# build it: everything, or only the targets named.
#
# Both compile as unity builds (FLOE_UNITY_BUILD, cmake/FloeUnity.cmake:
# batches of 8 sources, included by relative paths so that ccache serves a
# fresh clone), so the heavy headers (GoogleTest, nlohmann::json, MPI,
# HDF5) are parsed once a batch instead of once a source: 44 compilations
# instead of 180 for the ASan build, 502 s instead of 834 s from scratch on
# the 2-core CI machine (RELIABILITY.md). The main build stays one
# compilation a source, so a source that leans on another's includes still
# fails there; two sources of one target whose internal names clash fail
# here, as one would want anyway.
floe_sanitized_build() {
  local install=$1 flags=$2
  shift 2
  export FLOE_CMAKE_ARGS="-DFLOE_WITH_TORCH=OFF -DFLOE_WITH_CUDA=OFF -DFLOE_UNITY_BUILD=ON ${FLOE_CMAKE_ARGS:-}"
  if (($# == 0)); then
    CFLAGS="${flags}" CXXFLAGS="${flags}" LDFLAGS="${flags%% *}" floe_setup "${install}"
  else
    [[ "${install}" == no-install ]] || floe_install_packages
    CFLAGS="${flags}" CXXFLAGS="${flags}" LDFLAGS="${flags%% *}" floe_configure
    floe_phase "build: cmake --build ${BUILD_DIR} --target $*"
    cmake --build "${BUILD_DIR}" -j "$(floe_nproc)" --target "$@"
  fi
  # A unity build that silently compiled one source at a time would only
  # be slower: say so instead (FLOE_CMAKE_ARGS may turn it off on purpose).
  if grep -q '^FLOE_UNITY_BUILD:BOOL=ON$' "${BUILD_DIR}/CMakeCache.txt" &&
    ! compgen -G "${BUILD_DIR}/src/floe_unity/floe/batch_*.cpp" >/dev/null; then
    floe_die "${BUILD_DIR}: FLOE_UNITY_BUILD is on but libfloe has no unity batches (cmake/FloeUnity.cmake did not run)"
  fi
}

floe_stage_asan() {
  local install=$1 build_only=$2 regex=$3
  BUILD_DIR="${ASAN_BUILD_DIR:-build-asan}"
  # -O1 -g1, ASan's own advice, instead of RelWithDebInfo's -O2 -g: the
  # build is most of the stage's time, and -g1's line tables are all the
  # reports' stacks need. The build type "Sanitize" adds no flags of its own
  # (CMake has none for it), so these are the only optimization flags; it
  # does not define NDEBUG, so assertions (nlohmann::json's) stay on.
  export FLOE_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Sanitize ${FLOE_CMAKE_ARGS:-}"
  floe_sanitized_build "${install}" \
    "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -O1 -g1"
  ((build_only)) && return 0
  local supp
  supp="$(floe_sanitizer_dir)"
  # Leak checking is off under mpirun: Open MPI unloads its components at
  # MPI_Finalize, so the leaks they keep by design are reported from
  # "<unknown module>" frames no suppression can match (a 2-rank MPI hello
  # world: 116 KB in 3,335 allocations). FLOE_ASAN_LEAKS=1 turns it on, with
  # lsan.supp for what can be matched. The install test links an
  # uninstrumented program to the instrumented library, which ASan refuses
  # by design: it runs in the main stage. So does the 64-rank run of
  # engine_resharding_test: 64 instrumented processes on the 2 cores, each
  # with ASan's shadow memory, are not worth the stage's time and memory.
  export ASAN_OPTIONS="detect_leaks=${FLOE_ASAN_LEAKS:-0}:halt_on_error=1:abort_on_error=0:detect_odr_violation=0"
  export LSAN_OPTIONS="suppressions=${supp}/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=${supp}/ubsan.supp"
  local args=(--test-dir "${BUILD_DIR}" --output-on-failure -j "$(floe_nproc)"
              -E '^install_consumer$|^engine_resharding_test\.np64$')
  [[ -n "${regex}" ]] && args+=(-R "${regex}")
  floe_phase "test (asan+ubsan): ctest ${args[*]}"
  ctest "${args[@]}"
}

floe_stage_tsan() {
  local install=$1 build_only=$2 regex=$3
  BUILD_DIR="${TSAN_BUILD_DIR:-build-tsan}"
  # Only the suites that start threads (a full TSan build would double CI's
  # build time for tests that start none): the asynchronous save's I/O
  # thread (async_save_test, async_crash; with mpiio its checksum thread
  # runs inside it), and load_check_test, whose pieces of more than a
  # read-ahead chunk are hashed as the read-ahead thread reads them, whose
  # hdf5 loads without storage offsets start load's checker thread, and
  # whose mpiio saves start the checksum thread from the trainer's thread;
  # and commit_protocol_test, whose retention tests run the background
  # deleter's thread against the engine's calls on the same file system;
  # and exchange_read_test, whose two-phase loads read each round on a
  # thread of its own while the main thread moves the last one with MPI.
  floe_sanitized_build "${install}" "-fsanitize=thread -fno-omit-frame-pointer" \
    ${FLOE_TSAN_TARGETS:-async_save_test async_crash load_check_test commit_protocol_test exchange_read_test}
  ((build_only)) && return 0
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$(floe_sanitizer_dir)/tsan.supp"
  # Their tests: names containing "async", "load_check", "commit_protocol"
  # or "exchange_read" (or -R REGEX).
  local tests="${regex:-async|load_check|commit_protocol|exchange_read}"
  local args=(--test-dir "${BUILD_DIR}" --output-on-failure -j "$(floe_nproc)"
              -R "${tests}")
  if [[ -z "$(ctest --test-dir "${BUILD_DIR}" -N -R "${tests}" | grep -E '^ *Test +#')" ]]; then
    floe_phase "test (tsan): no test matches '${tests}' yet; nothing to run"
    return 0
  fi
  floe_phase "test (tsan): ctest ${args[*]}"
  ctest "${args[@]}"
}

floe_stage_fuzz() {
  local install=$1 build_only=$2
  if [[ "${install}" != no-install ]]; then floe_install_packages; fi
  local args=(--seconds "${FLOE_FUZZ_SECONDS:-30}")
  if ((build_only)); then
    bash scripts/fuzz.sh --build-only
    return
  fi
  floe_phase "fuzz: scripts/fuzz.sh ${args[*]}"
  bash scripts/fuzz.sh "${args[@]}"
}

# crash: SIGKILL one rank of the example trainer at random moments
# (scripts/reliability.sh, the short run) with the main build's trainer.
floe_stage_crash() {
  local build_only=$1
  ((build_only)) && return 0
  BUILD_DIR="${BUILD_DIR:-build}"
  if [[ -z "$(find "${BUILD_DIR}" -name floe-train-example -type f 2>/dev/null | head -1)" ]]; then
    floe_phase "crash: no floe-train-example in ${BUILD_DIR} (LibTorch off?); skipped"
    return 0
  fi
  floe_phase "crash: scripts/reliability.sh --trials ${FLOE_CRASH_TRIALS:-3} --steps 6"
  BUILD_DIR="${BUILD_DIR}" bash scripts/reliability.sh --trials "${FLOE_CRASH_TRIALS:-3}" --steps 6
}

# all: every stage in turn, each in a fresh shell; stops at the first that
# fails and prints each stage's time.
floe_stage_all() {
  local install=$1 build_only=$2 regex=$3 s rc=0 start
  local times=()
  for s in main crash fuzz asan tsan; do
    start=${SECONDS}
    local stage_args=(--stage "${s}")
    ((build_only)) && stage_args+=(--build-only)
    # Packages are installed (at most) once, by the first stage.
    [[ "${install}" == no-install || "${s}" != main ]] && stage_args+=(--no-install)
    [[ -n "${regex}" && "${s}" == main ]] && stage_args+=(-R "${regex}")
    bash "${FLOE_ROOT}/scripts/test.sh" "${stage_args[@]}" || rc=$?
    times+=("$(printf '%-5s %5ds %s' "${s}" $((SECONDS - start)) "$([[ ${rc} -eq 0 ]] && echo ok || echo FAILED)")")
    ((rc == 0)) || break
  done
  floe_phase "stages"
  printf '  %s\n' "${times[@]}"
  return "${rc}"
}

floe_run_stage() {
  local stage=$1 install=$2 build_only=$3 regex=$4
  # shellcheck source=scripts/lib/setup.sh
  source "${FLOE_ROOT}/scripts/lib/setup.sh"
  floe_check_disk
  case "${stage}" in
    asan) floe_stage_asan "${install}" "${build_only}" "${regex}" ;;
    tsan) floe_stage_tsan "${install}" "${build_only}" "${regex}" ;;
    fuzz) floe_stage_fuzz "${install}" "${build_only}" ;;
    crash) floe_stage_crash "${build_only}" ;;
    all) floe_stage_all "${install}" "${build_only}" "${regex}" ;;
  esac
  local rc=$?
  ((rc == 0)) && floe_phase "done: stage ${stage} passed"
  return "${rc}"
}
