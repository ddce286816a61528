#!/usr/bin/env bash
# scripts/test.sh's free-space check (scripts/lib/setup.sh, floe_check_disk):
# a disk with less than FLOE_MIN_FREE_GIB free stops it at once, before any
# install or build, with one line naming the free space and the need; a
# value that is not a whole number is named too. Usage: check_setup_disk.sh
# REPO_ROOT
set -uo pipefail
root="$1"
fail() { echo "FAIL: $*" >&2; exit 1; }

# Returns test.sh's exit status; its stderr in ${err}. BUILD_DIR points
# nowhere that exists: a check that let it through would try to configure.
run() {
  err=$(cd "${root}" && env FLOE_MIN_FREE_GIB="$1" BUILD_DIR=/nonexistent/floe-disk-check \
    bash scripts/test.sh --no-install --build-only 2>&1 >/dev/null)
}

run 1000000000; rc=$?
((rc == 1)) || fail "FLOE_MIN_FREE_GIB=1000000000: exit ${rc}, expected 1 (${err})"
[[ "${err}" =~ ^error:\ only\ [0-9]+\ MiB\ free\ on\ the\ file\ system\ of\ .*needs\ about\ 1000000000\ GiB ]] ||
  fail "FLOE_MIN_FREE_GIB=1000000000: unexpected message: ${err}"
[[ "${err}" == *"FLOE_MIN_FREE_GIB"* ]] || fail "the message does not name FLOE_MIN_FREE_GIB: ${err}"

run 2.5; rc=$?
((rc == 1)) || fail "FLOE_MIN_FREE_GIB=2.5: exit ${rc}, expected 1"
[[ "${err}" == "error: FLOE_MIN_FREE_GIB must be a whole number of GiB, not '2.5'" ]] ||
  fail "FLOE_MIN_FREE_GIB=2.5: unexpected message: ${err}"

# The stages check too (before their own builds).
err=$(cd "${root}" && env FLOE_MIN_FREE_GIB=1000000000 BUILD_DIR=/nonexistent/floe-disk-check \
  bash scripts/test.sh --stage fuzz --no-install --build-only 2>&1 >/dev/null); rc=$?
((rc == 1)) && [[ "${err}" == *"needs about 1000000000 GiB"* ]] ||
  fail "--stage fuzz: exit ${rc}, message: ${err}"
echo "ok: the free-space check stops test.sh with a clear error"
