#!/usr/bin/env bash
# Packs scripts/gpu_check.sh's programs into one relocatable folder, for a GPU
# node that has the NVIDIA driver but not this machine's Open MPI and HDF5
# packages (a cloud GPU image, a container without MPI): the CUDA test and
# benchmark binaries, every shared library they load (glibc and the driver's
# libcuda excepted), and Open MPI's and PMIx's runtime trees (mpirun, the MCA
# plugins, help files), which OPAL_DESTDIR / PMIX_DESTDIR make them find under
# the folder. On the GPU node: `bash OUT/run.sh [gpu_check.sh options]`.
# Usage: bash scripts/gpu_bundle.sh OUT   (BUILD_DIR default: build-gpu; the
#        build must have FLOE_WITH_CUDA=ON: scripts/gpu_check.sh --build-only)
set -euo pipefail
FLOE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out=${1:?usage: gpu_bundle.sh OUT}
build="${BUILD_DIR:-${FLOE_ROOT}/build-gpu}"
bins=("${build}/mpi_tests/cuda_staging_test" "${build}/mpi_tests/cuda_staging_bench")
for b in "${bins[@]}"; do
  [[ -x ${b} ]] || { echo "gpu_bundle.sh: ${b} missing: run scripts/gpu_check.sh --build-only" >&2; exit 1; }
done
# Debian's layout: /usr/lib/<triplet>/openmpi/lib (links to the libraries,
# and openmpi3/, the plugins), /usr/lib/<triplet>/pmix2 (PMIx and plugins).
ompi_lib=$(mpicc --showme:libdirs | awk '{print $1}')
multiarch=$(dirname "$(dirname "${ompi_lib}")")
pmix_tree=$(dirname "$(dirname "$(readlink -f "${multiarch}/libpmix.so.2")")")
[[ -d ${ompi_lib} && ${pmix_tree} == "${multiarch}"/pmix* ]] || {
  echo "gpu_bundle.sh: not Debian's Open MPI layout (${ompi_lib}, ${pmix_tree})" >&2; exit 1; }
# The Open MPI and PMIx trees, at their installed paths under root/.
trees=("$(dirname "${ompi_lib}")" "${pmix_tree}" /usr/share/openmpi /etc/openmpi
       /usr/bin/orterun /usr/bin/orted)
rm -rf "${out}"; mkdir -p "${out}/bin" "${out}/lib" "${out}/root"
for t in "${trees[@]}"; do
  [[ -e ${t} ]] || continue
  mkdir -p "${out}/root$(dirname "${t}")"
  cp -a "${t}" "${out}/root${t}"
done
ln -s orterun "${out}/root/usr/bin/mpirun"
rm -rf "${out}/root$(dirname "${ompi_lib}")/include" "${out}/root${pmix_tree}/include"
cp "${bins[@]}" "${out}/bin/"
cp "${FLOE_ROOT}/scripts/gpu_check.sh" "${out}/"
# Every library the binaries and the plugins load, but glibc's own and the
# driver's (the GPU node brings its own, matching its kernel module).
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libutil\.so|libresolv\.so|libcuda\.so|libnvidia)'
mapfile -t objects < <(printf '%s\n' "${bins[@]}" /usr/bin/orterun;
                       find "${out}/root" -name '*.so' -type f)
for o in "${objects[@]}"; do
  ldd "${o}" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ ${name} =~ ${skip} ]] && continue
  cp -L "${path}" "${out}/lib/${name}"
done
# Debug info would take most of the folder (it has to travel).
strip --strip-debug "${out}"/bin/* "${out}"/lib/*
cat > "${out}/run.sh" <<'EOF'
#!/usr/bin/env bash
# Runs gpu_check.sh on the binaries of this folder (made by gpu_bundle.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ompi_lib=$(cd "${here}/root" && find . -name libmpi.so.40 -printf '%h\n' | head -1)
export LD_LIBRARY_PATH="${here}/lib:${here}/root/${ompi_lib#./}${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"
export OPAL_DESTDIR="${here}/root" PMIX_DESTDIR="${here}/root" PATH="${here}/root/usr/bin:${PATH}"
# The ranks' PMIx clients ignore PMIX_DESTDIR for their plugin path.
pmix_plugins=$(cd "${here}/root" && find . -type d -path '*/pmix2/lib/pmix' | head -1)
export PMIX_MCA_mca_base_component_path="${here}/root/${pmix_plugins#./}"
exec bash "${here}/gpu_check.sh" --prebuilt "${here}/bin" "$@"
EOF
echo "gpu_bundle.sh: ${out}: $(du -sh "${out}" | cut -f1), $(ls "${out}/lib" | wc -l) libraries"
