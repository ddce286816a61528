#!/usr/bin/env bash
# NodeSharedBytes where Open MPI's shared windows live on a file system too
# small for the bytes: a 2 MiB tmpfs mounted for the run, with
# osc_sm_backing_directory pointed at it. Open MPI 4.1 itself prints a
# warning and waits forever for such a window; Floe must see the lack of
# room first and broadcast instead, while the small cases still use the
# window. Needs the right to mount (root outside restricted containers):
# skipped (77) without it. Usage: node_shared_small_shm.sh MPIEXEC TEST_BINARY
set -uo pipefail
mpiexec="$1"
binary="$2"
dir=$(mktemp -d "${TMPDIR:-/tmp}/floe-small-shm.XXXXXX") || exit 1
if ! mount -t tmpfs -o size=2m tmpfs "${dir}" 2>/dev/null; then
  rmdir "${dir}"
  echo "skipped: cannot mount a tmpfs here (needs root outside a restricted container)"
  exit 77
fi
trap 'umount "${dir}"; rmdir "${dir}"' EXIT
OMPI_MCA_osc_sm_backing_directory="${dir}" FLOE_TEST_SHM_ROOM=$((2 << 20)) \
  timeout 240 "${mpiexec}" -n 3 "${binary}" --gtest_filter='NodeShared.*'
