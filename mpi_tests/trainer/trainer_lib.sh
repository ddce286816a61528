# shellcheck shell=bash
# Shared by the floe-train-example CTest scripts (source it). Expects
# MPIEXEC, TRAINER, FLOE and WORK set by the caller.

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect NAME TEXT PATTERN: TEXT has a line matching the extended regex.
expect() {
  grep -Eq -- "$3" <<<"$2" || { printf '%s\n' "$2" >&2; fail "$1: no line matches '$3'"; }
}
# expect_not NAME TEXT PATTERN: no line of TEXT matches.
expect_not() {
  if grep -Eq -- "$3" <<<"$2"; then printf '%s\n' "$2" >&2; fail "$1: a line matches '$3'"; fi
}

# train NP ARGS...: runs the trainer on NP ranks; sets OUT (stdout+stderr)
# and RC, never fails by itself.
train() {
  local np="$1"
  shift
  set +e
  OUT="$("${MPIEXEC}" -np "${np}" "${TRAINER}" "$@" 2>&1)"
  RC=$?
  set -e
}

# Small and quick: 24 samples a step, a 16-wide MLP of 2 hidden layers.
SMALL=(--hidden 16 --layers 2 --global-batch 24 --seed 3)

# A listing of every file under DIR with its checksum: equal listings mean
# nothing committed changed.
tree_sums() {
  (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}
