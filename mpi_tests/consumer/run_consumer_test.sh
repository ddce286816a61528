#!/usr/bin/env bash
# CTest `install_consumer`: installs a built Floe into a fresh prefix, builds
# mpi_tests/consumer against it as an outside project would, and checks what
# it and the installed `floe` command print.
#
# Usage: run_consumer_test.sh BUILD_DIR WORK_DIR VERSION MPIEXEC GENERATOR CXX
set -euo pipefail
(($# == 6)) || { echo "usage: $0 BUILD WORK VERSION MPIEXEC GENERATOR CXX" >&2; exit 2; }
build="$1" work="$2" version="$3" mpiexec="$4" generator="$5" cxx="$6"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix="${work}/prefix"

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect NAME TEXT PATTERN: TEXT has a line matching the extended regex.
expect() {
  grep -Eq -- "$3" <<<"$2" || { printf '%s\n' "$2" >&2; fail "$1: no line matches '$3'"; }
}

rm -rf "${work}"
mkdir -p "${work}"

echo "== cmake --install ${build} --prefix ${prefix}"
cmake --install "${build}" --prefix "${prefix}" >"${work}/install.log" ||
  { cat "${work}/install.log" >&2; fail "cmake --install"; }
for f in include/floe/floe.hpp include/floe/version.hpp bin/floe; do
  [[ -e "${prefix}/${f}" ]] || fail "not installed: ${f}"
done
config="$(find "${prefix}" -name floeConfig.cmake -print -quit)"
[[ -n "${config}" ]] || fail "not installed: floeConfig.cmake"
[[ -n "$(find "${prefix}" -name 'libfloe.*' -print -quit)" ]] ||
  fail "not installed: libfloe"

echo "== configure and build the consumer against ${prefix}"
cmake -S "${here}" -B "${work}/build" -G "${generator}" \
  -DCMAKE_CXX_COMPILER="${cxx}" -DCMAKE_PREFIX_PATH="${prefix}" \
  >"${work}/configure.log" 2>&1 || { cat "${work}/configure.log" >&2; fail "consumer configure"; }
expect "consumer configure" "$(cat "${work}/configure.log")" "floe_DIR=${prefix}/"
cmake --build "${work}/build" >"${work}/build.log" 2>&1 ||
  { cat "${work}/build.log" >&2; fail "consumer build"; }

echo "== run the consumer (mpirun -np 1)"
out="$("${mpiexec}" -np 1 "${work}/build/floe_consumer")" || fail "consumer exited $?"
printf '%s\n' "${out}"
expect consumer "${out}" "^version ${version//./\\.}$"
expect consumer "${out}" "^config hdf5 /tmp/ckpt keep_last_n=2$"
expect consumer "${out}" "^bf16_size 2$"
expect consumer "${out}" "^engines hdf5 hf mpiio$"
expect consumer "${out}" "^bad_key invalid_config$"

echo "== run the installed floe (its RPATH finds libfloe)"
out="$(env -u LD_LIBRARY_PATH "${prefix}/bin/floe" --version)" || fail "installed floe failed"
expect "installed floe" "${out}" "^floe ${version//./\\.}$"

echo "PASS"
