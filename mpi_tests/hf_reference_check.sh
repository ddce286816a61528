#!/usr/bin/env bash
# Exports the reference samples at 1 and 3 ranks, checks them with
# safetensors' own reader (hf_reference_check.py), and checks that both rank
# counts wrote the same bytes.
# Usage: hf_reference_check.sh <mpiexec> <hf_reference_sample> <python> <check.py> <work dir>
set -euo pipefail
mpiexec=$1 sample=$2 python=$3 check=$4 work=$5
if [[ ! -x "${python}" ]]; then
  echo "skipped: ${python} not found (source scripts/lib/pyenv.sh && floe_pyenv)"
  exit 77
fi
if ! "${python}" -c 'import safetensors, numpy' 2>/dev/null; then
  echo "skipped: ${python} lacks safetensors or numpy (source scripts/lib/pyenv.sh && floe_pyenv)"
  exit 77
fi
rm -rf "${work}"
mkdir -p "${work}"
for n in 1 3; do
  "${mpiexec}" -n "${n}" "${sample}" "${work}/np${n}"
  "${python}" "${check}" "${work}/np${n}"
done
diff -r "${work}/np1" "${work}/np3"
echo "np1 and np3 exports are byte-identical"
rm -rf "${work}"
