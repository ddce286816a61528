# shellcheck shell=bash
# Shared by scripts/test.sh and scripts/demo.sh (source it, do not run it):
# installs the Debian packages Floe needs, configures and builds.
#
# The caller sets FLOE_ROOT (the repository root) and cds there. Reads:
#   BUILD_DIR        build directory, relative to the root (default: build)
#   FLOE_CMAKE_ARGS  extra arguments for the configure step (word-split)

BUILD_DIR="${BUILD_DIR:-build}"

# ccache (CMakeLists.txt uses it when found) keys objects by paths relative
# to the checkout and, with -g, not by the build directory's path either,
# so a clone elsewhere (CI's fresh clone) reuses what another clone of the
# same sources compiled. ccache's defaults hash the absolute paths and the
# working directory: every new clone was a build from scratch (session 21:
# 16 min for the main build, 25-38 min for the sanitizer builds). The cost:
# an object taken from another clone's build names that clone's directory
# in its debug information. Set either variable to keep your own.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-${FLOE_ROOT}}"
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"

FLOE_DEBIAN_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
  libtorch-dev libboost-program-options-dev nlohmann-json3-dev
  libxxhash-dev libgtest-dev
  python3-h5py python3-numpy python3-venv clang
  slurmctld slurmd slurm-client munge  # the Slurm test (scripts/slurm_local.sh)
  libclang-rt-14-dev  # libFuzzer and the sanitizer runtimes (scripts/fuzz.sh)
)

# Prints a phase header: "==> <what> (<seconds since start>s)".
floe_phase() {
  printf '\n==> %s  [%ds]\n' "$*" "${SECONDS}"
}

floe_die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

floe_nproc() {
  nproc 2>/dev/null || echo 2
}

# Installs whichever of FLOE_DEBIAN_PACKAGES are missing; runs apt-get update
# only when something is.
floe_install_packages() {
  floe_phase "install: checking ${#FLOE_DEBIAN_PACKAGES[@]} Debian packages"
  command -v dpkg-query >/dev/null ||
    floe_die "dpkg-query not found: not a Debian system. Install the" \
      "dependencies yourself (README.md, 'On a cluster') and pass --no-install."
  local missing=() pkg
  for pkg in "${FLOE_DEBIAN_PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "${pkg}" 2>/dev/null)" \
          != installed ]]; then
      missing+=("${pkg}")
    fi
  done
  if ((${#missing[@]} == 0)); then
    echo "all present"
    return 0
  fi
  echo "missing: ${missing[*]}"
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null ||
      floe_die "installing packages needs root (or sudo); or pass --no-install"
    sudo=(sudo)
  fi
  floe_phase "install: apt-get update && apt-get install ${missing[*]}"
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y "${missing[@]}"
}

# Configures BUILD_DIR: Ninja when the build directory is new and ninja is
# installed; an existing build directory keeps its generator.
floe_configure() {
  local args=(-S "${FLOE_ROOT}" -B "${BUILD_DIR}")
  if [[ ! -f "${BUILD_DIR}/CMakeCache.txt" ]] && command -v ninja >/dev/null; then
    args+=(-G Ninja)
  fi
  # shellcheck disable=SC2206  # word splitting is the point
  args+=(${FLOE_CMAKE_ARGS:-})
  floe_phase "configure: cmake ${args[*]}"
  cmake "${args[@]}"
}

# Builds everything, or only FLOE_BUILD_TARGETS (space-separated) when set
# (the demo needs the floe command and the trainer, not the test suites).
floe_build() {
  local targets=()
  # shellcheck disable=SC2206  # word splitting is the point
  [[ -n "${FLOE_BUILD_TARGETS:-}" ]] && targets=(--target ${FLOE_BUILD_TARGETS})
  floe_phase "build: cmake --build ${BUILD_DIR} -j $(floe_nproc) ${targets[*]}"
  cmake --build "${BUILD_DIR}" -j "$(floe_nproc)" "${targets[@]}"
}

# Stops with a clear error when the file system holding the repository has
# less than FLOE_MIN_FREE_GIB (default 3) GiB free: the builds take ~2 GiB
# (main, asan, tsan, fuzz), the venv 0.2 GiB, and the tests write up to
# ~1 GiB of checkpoints at a time. Without this a full disk shows up as
# some test's "No space left on device" halfway through (CI, 2026-11-29).
# FLOE_MIN_FREE_GIB=0 skips the check.
floe_check_disk() {
  local need="${FLOE_MIN_FREE_GIB:-3}" free_kib
  [[ "${need}" =~ ^[0-9]+$ ]] ||
    floe_die "FLOE_MIN_FREE_GIB must be a whole number of GiB, not '${need}'"
  ((need > 0)) || return 0
  free_kib=$(df -Pk "${FLOE_ROOT}" 2>/dev/null | awk 'NR == 2 { print $4 }')
  [[ "${free_kib}" =~ ^[0-9]+$ ]] || {
    echo "setup: cannot tell the free space under ${FLOE_ROOT}; not checked" >&2
    return 0
  }
  if ((free_kib < need * 1024 * 1024)); then
    floe_die "only $((free_kib / 1024)) MiB free on the file system of" \
      "${FLOE_ROOT}; building and testing Floe needs about ${need} GiB." \
      "Free some space (old build-*/ directories, checkpoints), or set" \
      "FLOE_MIN_FREE_GIB to a smaller number of GiB (0: no check)."
  fi
}

# Install (unless $1 is "no-install"), configure, build.
floe_setup() {
  floe_check_disk
  if [[ "${1:-}" != no-install ]]; then
    floe_install_packages
  else
    floe_phase "install: skipped (--no-install)"
  fi
  # The reference checks (safetensors' own reader) need a venv from PyPI;
  # without one CTest reports them as skipped.
  # shellcheck source=scripts/lib/pyenv.sh
  source "${FLOE_ROOT}/scripts/lib/pyenv.sh"
  floe_phase "python: venv for reference checks"
  floe_pyenv "${FLOE_ROOT}" || echo "setup: no Python venv; reference checks will be skipped" >&2
  floe_configure
  floe_build
}
