# shellcheck shell=bash
# The Python environment the reference checks use (safetensors' own reader
# loading Floe's exports). Source it, do not run it:
#   source scripts/lib/pyenv.sh && floe_pyenv [<repo root>]
# Creates <root>/.venv when it is missing (python3 -m venv), installs
# safetensors and numpy into it when they are missing, and sets
# FLOE_PYTHON to its interpreter. Idempotent: a ready venv costs one import.
# Configure Floe after this so CMake finds the venv (FLOE_PYTHON_VENV).
#
# Reads: FLOE_ROOT (default: the repository holding this file),
#        FLOE_VENV (default: $FLOE_ROOT/.venv),
#        PIP_ARGS  (extra pip arguments, word-split; e.g. an index URL).

floe_pyenv() {
  local root="${1:-${FLOE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}}"
  local venv="${FLOE_VENV:-${root}/.venv}"
  local python="${venv}/bin/python"
  if [[ ! -x "${python}" ]]; then
    echo "pyenv: creating ${venv}"
    python3 -m venv "${venv}" || {
      echo "pyenv: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2
      return 1
    }
  fi
  if ! "${python}" -c 'import safetensors.numpy, numpy' 2>/dev/null; then
    echo "pyenv: installing safetensors numpy into ${venv}"
    # shellcheck disable=SC2086
    "${python}" -m pip install --quiet --disable-pip-version-check ${PIP_ARGS:-} \
      safetensors numpy || {
      echo "pyenv: pip install safetensors numpy failed" >&2
      return 1
    }
  fi
  FLOE_PYTHON="${python}"
  export FLOE_PYTHON
}

# The peers' environment for scripts/bench.sh: PyPI's torch (which has
# torch.distributed.checkpoint, unlike Debian's 1.13), h5py and numpy, in
# <root>/.venv-peers (FLOE_PEERS_VENV). PyPI's Linux torch wheel pulls the
# nvidia-* CUDA wheels (about 5 GB installed; it runs on CPUs too). Sets
# FLOE_PEERS_PYTHON; returns non-zero, saying why, when it cannot be made.
# FLOE_PEERS_TORCH pins the version (default 2.5.1, the one BENCHMARKS.md
# quotes).
floe_peers_pyenv() {
  local root="${1:-${FLOE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}}"
  local venv="${FLOE_PEERS_VENV:-${root}/.venv-peers}"
  local torch="${FLOE_PEERS_TORCH:-2.5.1}"
  local python="${venv}/bin/python"
  if [[ ! -x "${python}" ]]; then
    echo "pyenv: creating ${venv}"
    python3 -m venv "${venv}" || return 1
  fi
  if ! "${python}" -c 'import torch.distributed.checkpoint, h5py, numpy' 2>/dev/null; then
    echo "pyenv: installing torch==${torch} h5py numpy into ${venv} (several GB)"
    # shellcheck disable=SC2086
    "${python}" -m pip install --quiet --disable-pip-version-check ${PIP_ARGS:-} \
      "torch==${torch}" h5py numpy || {
      echo "pyenv: pip install torch==${torch} h5py numpy failed" >&2
      return 1
    }
  fi
  FLOE_PEERS_PYTHON="${python}"
  export FLOE_PEERS_PYTHON
}
