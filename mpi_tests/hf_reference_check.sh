#!/usr/bin/env bash
# Exports the reference samples at 1 and 3 ranks, checks them with
# safetensors' own reader (hf_reference_check.py), and checks that both rank
# counts wrote the same bytes. Then saves the same model as checkpoints (hdf5
# at 3 ranks, mpiio at 4), exports each sample again with `floe export-hf` at
# 1, 2, 3 and 4 ranks from a checkpoint saved at another count, and checks
# those exports the same way: the reference reader loads every file with the
# checkpoint's values, and the bytes equal the in-memory export's.
# Usage: hf_reference_check.sh <mpiexec> <hf_reference_sample> <python> <check.py> <work dir> [<floe>]
set -euo pipefail
mpiexec=$1 sample=$2 python=$3 check=$4 work=$5 floe=${6:-}
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

if [[ -n "${floe}" ]]; then
  "${mpiexec}" -n 3 "${sample}" --checkpoint hdf5 "${work}/ckpt-hdf5"
  "${mpiexec}" -n 4 "${sample}" --checkpoint mpiio "${work}/ckpt-mpiio"
  # np:engine, each exporting a checkpoint saved at another rank count.
  for case in 1:hdf5 2:hdf5 3:mpiio 4:hdf5 2:mpiio; do
    n=${case%%:*} engine=${case#*:}
    ckpt="${work}/ckpt-${engine}/global_step_1"
    out="${work}/cli-np${n}-${engine}"
    mkdir -p "${out}"
    # The options of hf_reference_sample's four samples.
    "${mpiexec}" -n "${n}" "${floe}" export-hf "${ckpt}" --out "${out}/mixed"
    "${mpiexec}" -n "${n}" "${floe}" export-hf "${ckpt}" --out "${out}/sharded" \
      --max-shard-size 2000 --buffer-size 64
    "${mpiexec}" -n "${n}" "${floe}" export-hf "${ckpt}" --out "${out}/bf16" --dtype BF16
    "${mpiexec}" -n "${n}" "${floe}" export-hf "${ckpt}" --out "${out}/f16" \
      --dtype F16 --max-shard-size 1500
    cp "${work}"/np1/*.expected.json "${out}/"
    "${python}" "${check}" "${out}"
    diff -r "${work}/np1" "${out}"
    echo "export-hf at ${n} ranks of the ${engine} checkpoint: byte-identical to the in-memory export"
  done
fi
rm -rf "${work}"
