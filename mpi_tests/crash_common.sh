# shellcheck shell=bash
# What crash_at_site.sh and async_crash.sh share (each sources it).

# crash_args PROGRAM_TARGET "$@": checks the four arguments (MPIEXEC BINARY
# ENGINE SCRATCH) and sets mpiexec, binary, engine and scratch; exits 2
# with the reason when the launcher or the test program is missing.
crash_args() {
  local target=$1
  shift
  if (($# != 4)); then
    echo "usage: $0 MPIEXEC BINARY ENGINE SCRATCH" >&2
    exit 2
  fi
  mpiexec=$1 binary=$2 engine=$3 scratch=$4
  if ! command -v "$mpiexec" >/dev/null; then
    echo "$0: MPI launcher '$mpiexec' not found" >&2
    exit 2
  fi
  if [[ ! -x $binary ]]; then
    echo "$0: '$binary' is not an executable: build the $target target first" >&2
    exit 2
  fi
}

# Staging directories left in $1 (0 when $1 does not exist: the save was
# killed before it made the checkpoint directory).
staging_count() {
  if [[ -d $1 ]]; then find "$1" -mindepth 1 -maxdepth 1 -name '.staging-*' | wc -l
  else echo 0; fi
}
