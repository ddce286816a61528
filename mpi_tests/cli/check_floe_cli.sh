#!/usr/bin/env bash
# CTest `floe_cli`: the `floe` command's global flags, its dispatcher's
# errors, and that under mpirun only rank 0 prints.
#
# Usage: check_floe_cli.sh FLOE VERSION MPIEXEC
set -euo pipefail
(($# == 3)) || { echo "usage: $0 FLOE VERSION MPIEXEC" >&2; exit 2; }
floe="$1" version="$2" mpiexec="$3"

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect NAME TEXT PATTERN: TEXT has a line matching the extended regex.
expect() {
  grep -Eq -- "$3" <<<"$2" || { printf '%s\n' "$2" >&2; fail "$1: no line matches '$3'"; }
}

out="$("${floe}" --version)"
[[ "${out}" == "floe ${version}" ]] || fail "--version printed '${out}'"
[[ "$("${floe}" version)" == "${out}" ]] || fail "'floe version' differs"

out="$("${floe}" --list-engines)"
printf '%s\n' "${out}"
expect --list-engines "${out}" '^hdf5 +resumable '
expect --list-engines "${out}" '^mpiio +resumable '
expect --list-engines "${out}" '^hf +export-only '
json="$("${floe}" engines --json)"
expect "engines --json" "${json}" '"name": "hdf5"'

out="$("${floe}" --help)"
expect --help "${out}" '^Usage: floe '
expect --help "${out}" '^  engines '

set +e
err="$("${floe}" no-such-command 2>&1)"
rc=$?
set -e
((rc == 2)) || fail "unknown command exited ${rc}, want 2"
expect "unknown command" "${err}" "unknown command 'no-such-command' \(known commands: .*engines.*version"

# Under mpirun every rank runs; only rank 0 prints.
out="$("${mpiexec}" -np 2 "${floe}" --version)"
[[ "${out}" == "floe ${version}" ]] || fail "mpirun -np 2 printed '${out}'"
echo PASS
