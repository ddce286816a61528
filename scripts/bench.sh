#!/usr/bin/env bash
# The figures in BENCHMARKS.md: floe bench at 1, 2 and 4 ranks on a ~1 GiB
# state (engines side by side with raw POSIX I/O of the same bytes, fsync
# included in both; --control: a raw read in each load's place, paired as
# the load is, for the noise floor of the load ratios), the Hugging Face export (floe bench --export) at the
# same rank counts, and 20,000 small tensors for the per-tensor cost.
# Also, at each rank count: async save() blocking vs memcpy (floe bench
# --async) and the peers (scripts/bench_peers.py: torch.save/load, h5py and
# PyTorch DCP, with PyPI's torch in .venv-peers).
# Usage: bash scripts/bench.sh [--no-install] [--size 1GiB] [--repeat 4]
#        [--ranks "1 2 4"] [--dir SCRATCH]   (results: $BENCH_OUT, default bench-results/)
set -euo pipefail
FLOE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${FLOE_ROOT}"
install=install size=1GiB repeat=4 ranks="1 2 4" scratch=/tmp/floe-bench
while (($#)); do
  case "$1" in
    --no-install) install=no-install ;;
    --size) size=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --ranks) ranks=$2; shift ;;
    --dir) scratch=$2; shift ;;
    *) echo "bench.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh
floe_setup "${install}"
out="${BENCH_OUT:-${FLOE_ROOT}/bench-results}"
mkdir -p "${out}"
floe="${BUILD_DIR}/src/cli/floe"
mpi=(mpirun --oversubscribe)
[[ $(id -u) -eq 0 ]] && mpi+=(--allow-run-as-root)
floe_phase "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(df -h "$(dirname "${scratch}")" | awk 'NR==2 {print $1}')"
for n in ${ranks}; do
  floe_phase "bench: ${n} ranks, ${size}, 16 tensors"
  "${mpi[@]}" -np "${n}" "${floe}" bench --dir "${scratch}" --size "${size}" \
    --tensors 16 --repeat "${repeat}" --control --json "${out}/large_np${n}.json"
done
for n in ${ranks}; do
  floe_phase "bench: Hugging Face export, ${n} ranks, ${size}, 16 tensors"
  "${mpi[@]}" -np "${n}" "${floe}" bench --export --dir "${scratch}" --size "${size}" \
    --tensors 16 --repeat "${repeat}" --json "${out}/export_np${n}.json"
done
# The peers' Python: PyPI's torch (with DCP) in .venv-peers; without the
# network, Debian's python3-torch (1.13: no DCP, which the script reports).
# shellcheck source=scripts/lib/pyenv.sh
source scripts/lib/pyenv.sh
peers_python=
if floe_peers_pyenv "${FLOE_ROOT}"; then
  peers_python="${FLOE_PEERS_PYTHON}"
elif /usr/bin/python3 -c 'import torch, h5py' 2>/dev/null; then
  peers_python=/usr/bin/python3
fi
for n in ${ranks}; do
  floe_phase "bench: ${n} ranks, ${size}: async save() blocking vs memcpy"
  "${mpi[@]}" -np "${n}" "${floe}" bench --async --dir "${scratch}" --size "${size}" \
    --tensors 16 --repeat "${repeat}" --json "${out}/async_np${n}.json"
  # Peers (torch.save/load per rank, h5py, DCP), each against its own raw
  # write/read in the same run.
  if [[ -n ${peers_python} ]]; then
    floe_phase "bench: ${n} ranks, ${size}: peers (scripts/bench_peers.py, ${peers_python})"
    "${mpi[@]}" -np "${n}" "${peers_python}" scripts/bench_peers.py --dir "${scratch}" \
      --size "${size}" --tensors 16 --repeat "${repeat}" --json "${out}/peers_np${n}.json"
  else
    floe_phase "peers skipped: no Python with torch and h5py (see above)"
  fi
done
floe_phase "bench: 2 ranks, 20000 small tensors"
"${mpi[@]}" -np 2 "${floe}" bench --dir "${scratch}" --size 20MiB --tensors 20000 \
  --repeat 1 --json "${out}/small_np2.json"
rm -rf "${scratch}"
# The tables BENCHMARKS.md records, from every JSON above.
python3 scripts/bench_summary.py "${out}"/*.json >"${out}/summary.md"
floe_phase "done: results in ${out}, tables in ${out}/summary.md"
