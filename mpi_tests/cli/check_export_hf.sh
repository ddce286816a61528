#!/usr/bin/env bash
# CTest `floe_cli_export_hf`: floe export-hf on checkpoints that cli_fixture
# saves (hdf5 at 3 ranks, mpiio at 2), exported at 1, 2, 3 and 4 ranks: the
# bytes equal the hf engine's own export of the same state and do not depend
# on the rank counts; sharding, casting, renaming, copied files; floe verify
# and floe diff on the exports; and every bad input leaves the disk as it was.
#
# Usage: check_export_hf.sh FLOE CLI_FIXTURE MPIEXEC WORKDIR
set -euo pipefail
(($# == 4)) || { echo "usage: $0 FLOE CLI_FIXTURE MPIEXEC WORKDIR" >&2; exit 2; }
floe="$1" fixture="$2" mpiexec="$3" work="$4"
py=/usr/bin/python3
[[ -x "${py}" ]] || py=python3
export OMPI_ALLOW_RUN_AS_ROOT="${OMPI_ALLOW_RUN_AS_ROOT:-1}"
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}"
export OMPI_MCA_rmaps_base_oversubscribe="${OMPI_MCA_rmaps_base_oversubscribe:-1}"

fail() { echo "FAIL: $*" >&2; exit 1; }
expect() {
  grep -Eq -- "$3" <<<"$2" || { printf '%s\n' "$2" >&2; fail "$1: no line matches '$3'"; }
}
# run WANT_RC NP CMD...: runs CMD (under mpirun -np NP unless NP is 0),
# leaving its stdout and stderr in $out; fails unless it exits WANT_RC.
run() {
  local want="$1" np="$2"
  shift 2
  local cmd=("$@")
  ((np == 0)) || cmd=("${mpiexec}" -np "${np}" "$@")
  set +e
  out="$("${cmd[@]}" 2>&1)"
  local rc=$?
  set -e
  ((rc == want)) || { printf '%s\n' "${out}" >&2; fail "'${cmd[*]}' exited ${rc}, want ${want}"; }
}
# A listing of every file under $1 with its checksum ("" when absent).
snapshot() { [[ -e "$1" ]] && (cd "$1" && find . -type f -print0 | sort -z | xargs -0r sha256sum) || true; }
same_files() {  # same_files DIR_A DIR_B: the same names and bytes
  diff -r "$1" "$2" >/dev/null || { diff -r "$1" "$2" >&2 || true; fail "$1 and $2 differ"; }
}

rm -rf "${work}"
mkdir -p "${work}"
save() { run 0 "$1" "${fixture}" "${@:2}"; }
save 3 hdf5 "${work}/h5" 1 --partition mixed
save 2 mpiio "${work}/mp" 1 --partition flat
save 1 hf "${work}/hf1" 1
save 4 hf "${work}/hf4" 1 --partition flat
save 1 mpiio "${work}/changed" 1 --add model/model.embed.weight 100 0.5
# As Floe wrote hdf5 checkpoints before it recorded storage offsets.
save 2 hdf5 "${work}/h5old" 1 --partition flat --without-storage-offsets
h5="${work}/h5/global_step_1" mp="${work}/mp/global_step_1"
ref="${work}/hf1/global_step_1/model.safetensors"
cmp "${ref}" "${work}/hf4/global_step_1/model.safetensors" ||
  fail "the hf engine wrote different bytes at 1 and 4 ranks"

# ---- the same bytes at every rank count, from either engine ----------------
for case in "1 ${h5}" "2 ${h5}" "3 ${mp}" "4 ${h5}" "1 ${mp}" "4 ${mp}" \
    "3 ${work}/h5old/global_step_1"; do
  read -r np src <<<"${case}"
  dest="${work}/e-${np}-$(basename "$(dirname "${src}")")"
  run 0 "${np}" "${floe}" export-hf "${src}" --out "${dest}"
  expect "export-hf -np ${np}" "${out}" '^export-hf .*: 7 tensors, .* in [0-9.]+ s .*'"${np} rank"
  expect "export-hf -np ${np}" "${out}" '^  model\.safetensors$'
  [[ "$(ls "${dest}")" == "model.safetensors" ]] || fail "${dest} holds $(ls "${dest}")"
  cmp "${ref}" "${dest}/model.safetensors" ||
    fail "export-hf -np ${np} of $(basename "$(dirname "${src}")") differs from the hf engine's export"
done
echo "export-hf at 1-4 ranks from hdf5 (saved at 3) and mpiio (saved at 2): byte-identical"

# A slice of 64 bytes: many rounds, tensors cut across slices and ranks.
run 0 3 "${floe}" export-hf "${h5}" --out "${work}/tiny" --buffer-size 64
cmp "${ref}" "${work}/tiny/model.safetensors" || fail "--buffer-size 64 changed the bytes"

# ---- shards and index ------------------------------------------------------
run 0 1 "${floe}" export-hf "${h5}" --out "${work}/sh1" --max-shard-size 1kB
run 0 3 "${floe}" export-hf "${mp}" --out "${work}/sh3" --max-shard-size 1kB --buffer-size 1KiB
same_files "${work}/sh1" "${work}/sh3"
expect "sharded" "${out}" '^  model\.safetensors\.index\.json$'
expect "sharded" "${out}" '^  model-00001-of-0000[2-9]\.safetensors$'
[[ ! -e "${work}/sh1/model.safetensors" ]] || fail "a sharded export also wrote model.safetensors"
"${py}" - "${work}/sh1" <<'EOF' || fail "the index does not describe the shards"
import json, os, struct, sys
d = sys.argv[1]
index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
total = 0
for f in sorted(set(index["weight_map"].values())):
    raw = open(os.path.join(d, f), "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    assert header.pop("__metadata__") == {"format": "pt"}, f
    for name, t in header.items():
        assert index["weight_map"][name] == f, name
        total += t["data_offsets"][1] - t["data_offsets"][0]
assert total == index["metadata"]["total_size"], (total, index["metadata"])
assert len(index["weight_map"]) == 7
EOF

# ---- cast, rename, metadata, copied files -----------------------------------
echo '{"model_type": "test"}' >"${work}/config.json"
echo '{"version": "1.0"}' >"${work}/tokenizer.json"
run 0 2 "${floe}" export-hf "${h5}" --out "${work}/bf16a" --dtype BF16 \
  --strip-prefix model. --metadata origin=floe-test \
  --copy "${work}/config.json" --copy "${work}/tokenizer.json"
run 0 4 "${floe}" export-hf "${mp}" --out "${work}/bf16b" --dtype BF16 \
  --strip-prefix model. --metadata origin=floe-test \
  --copy "${work}/config.json" --copy "${work}/tokenizer.json"
same_files "${work}/bf16a" "${work}/bf16b"
cmp "${work}/config.json" "${work}/bf16a/config.json" || fail "config.json not copied"
"${py}" - "${work}/bf16a/model.safetensors" <<'EOF' || fail "cast/rename/metadata not as asked"
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
assert h.pop("__metadata__") == {"format": "pt", "origin": "floe-test"}, "metadata"
want = {"embed.weight": "BF16", "layers.0.w": "BF16", "bias": "BF16", "scale": "BF16",
        "empty": "BF16", "mask": "BOOL", "ids": "I64"}
assert {k: v["dtype"] for k, v in h.items()} == want, h
EOF

# ---- verify on HF directories ----------------------------------------------
for np in 0 2; do
  run 0 "${np}" "${floe}" verify "${work}/sh3"
  expect "verify sharded" "${out}" '^verify .*/sh3: ok \(Hugging Face safetensors\)$'
  expect "verify sharded" "${out}" 'files?, 7 tensors, '
done
run 0 0 "${floe}" verify "${work}/bf16a/model.safetensors"
expect "verify file" "${out}" ': ok \(Hugging Face safetensors\)$'
bad() {  # bad NAME: a fresh copy of the sharded export to break
  rm -rf "${work}/bad-$1"
  cp -r "${work}/sh1" "${work}/bad-$1"
  echo "${work}/bad-$1"
}
first_shard() { ls "$1" | grep -E '^model-00001-of-' ; }
d="$(bad truncated)"; s="$(first_shard "${d}")"
truncate -s -1 "${d}/${s}"
run 1 0 "${floe}" verify "${d}"
expect "verify truncated" "${out}" "${s}.*(data|bytes|size)"
expect "verify truncated" "${out}" ': FAILED \(Hugging Face safetensors\)$'
d="$(bad header)"; s="$(first_shard "${d}")"
printf '\xff\xff\xff\xff\x00\x00\x00\x00' | dd of="${d}/${s}" conv=notrunc status=none
run 1 2 "${floe}" verify "${d}"
expect "verify header length" "${out}" "${s}.*header"
d="$(bad missing)"; s="$(first_shard "${d}")"
rm "${d}/${s}"
run 1 0 "${floe}" verify "${d}"
expect "verify missing shard" "${out}" "${s}"
d="$(bad outside)"
"${py}" - "${d}/model.safetensors.index.json" <<'EOF'
import json, sys
p = sys.argv[1]; i = json.load(open(p))
k = sorted(i["weight_map"])[0]; i["weight_map"][k] = "../outside.safetensors"
json.dump(i, open(p, "w"))
EOF
run 1 0 "${floe}" verify "${d}"
expect "verify outside" "${out}" 'index\.json.*\.\./outside\.safetensors.*not a plain file name inside'
d="$(bad total)"
"${py}" - "${d}/model.safetensors.index.json" <<'EOF'
import json, sys
p = sys.argv[1]; i = json.load(open(p))
i["metadata"]["total_size"] += 1
json.dump(i, open(p, "w"))
EOF
run 1 0 "${floe}" verify "${d}"
expect "verify total_size" "${out}" 'index\.json.*total_size'
d="$(bad json)"
echo '{"weight_map": {"a": 1}}' >"${d}/model.safetensors.index.json"
run 1 0 "${floe}" verify "${d}"
expect "verify index json" "${out}" 'index\.json.*weight_map'
echo "verify: sound exports pass; truncated, bad header, missing shard, outside path, total_size, bad index fail"

# ---- diff between an export and a checkpoint --------------------------------
for np in 0 3; do
  run 0 "${np}" "${floe}" diff "${work}/e-1-h5" "${mp}"
  expect "diff export ckpt" "${out}" '^a: .*e-1-h5 \(Hugging Face safetensors, 1 file, 7 tensors\)$'
  expect "diff export ckpt" "${out}" "^note: comparing the checkpoint's model tensors only"
  expect "diff export ckpt" "${out}" '^tensors: 7 compared, 0 differ'
  expect "diff export ckpt" "${out}" '^result: equal'
done
run 0 2 "${floe}" diff "${h5}" "${work}/bf16a" --strip-prefix model.
expect "diff bf16" "${out}" 'checkpoint tensors? cast to the export'
expect "diff bf16" "${out}" '^result: equal'
run 1 0 "${floe}" diff "${h5}" "${work}/bf16a"
expect "diff no prefix" "${out}" 'only in'
run 1 2 "${floe}" diff "${work}/e-2-h5" "${work}/changed/global_step_1"
expect "diff changed" "${out}" '^model/model\.embed\.weight\[6,4\]: a=.* b=.*'
expect "diff changed" "${out}" '^result: different'
run 0 0 "${floe}" diff "${work}/e-2-h5" "${work}/changed/global_step_1" --atol 0.5
run 0 2 "${floe}" diff "${work}/sh1" "${work}/e-4-h5"
expect "diff HF HF" "${out}" '^result: equal'
echo "diff: export vs checkpoint (cast, prefix), changed element, HF vs HF"

# ---- the hf engine's checkpoints: verify checks the manifest's checksums ---
hf4="${work}/hf4/global_step_1"
for np in 0 2; do
  run 0 "${np}" "${floe}" verify "${hf4}"
  expect "verify hf engine" "${out}" "^verify .*/hf4/global_step_1: ok$"
  expect "verify hf engine" "${out}" '^  7 pieces, 0 blobs, '
  run 0 "${np}" "${floe}" diff "${hf4}" "${h5}"
  expect "diff hf engine" "${out}" "^note: comparing the checkpoint's model tensors only"
  expect "diff hf engine" "${out}" '^tensors: 7 compared, 0 differ'
  expect "diff hf engine" "${out}" '^result: equal'
done
cp -r "${work}/hf4" "${work}/hf4-flipped"
flipped="${work}/hf4-flipped/global_step_1"
"${py}" - "${flipped}" <<'PY'
import json, sys
d = sys.argv[1]
t = json.load(open(d + "/manifest.json"))["tensors"][-1]
p = t["pieces"][0]
with open(d + "/" + p["file"], "r+b") as f:
    f.seek(p["offset"] + p["nbytes"] // 2)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0x5A]))
PY
victim="$("${py}" -c 'import json,sys; print(json.load(open(sys.argv[1]))["tensors"][-1]["name"])' "${flipped}/manifest.json")"
run 1 2 "${floe}" verify "${flipped}"
expect "verify hf engine flipped" "${out}" "model\.safetensors.*${victim//./\.}|${victim//./\.}.*model\.safetensors"
expect "verify hf engine flipped" "${out}" ': FAILED$'
echo "hf engine checkpoints: verify (1, 2 ranks) and diff against hdf5 pass; a flipped byte is named"

# ---- bad input: nothing is written or overwritten ---------------------------
mkdir -p "${work}/busy"
cp "${ref}" "${work}/busy/model.safetensors"
echo keep >"${work}/busy/keep.txt"
before="$(snapshot "${work}/busy")"
run 1 2 "${floe}" export-hf "${h5}" --out "${work}/busy" --dtype F16
expect "non-empty --out" "${out}" '^floe: error: .*--out .*/busy is not empty .*--force'
[[ "$(snapshot "${work}/busy")" == "${before}" ]] || fail "a refused export changed ${work}/busy"
never() {  # never NAME: the command left ${work}/NAME absent
  [[ ! -e "${work}/$1" ]] || fail "$2 created ${work}/$1"
}
run 2 0 "${floe}" export-hf "${h5}" --out "${work}/n1" --dtype I8
expect "--dtype I8" "${out}" "unknown --dtype 'I8' \(expected F16, BF16, F32 or F64\)"
never n1 "--dtype I8"
run 2 2 "${floe}" export-hf "${h5}" --out "${work}/n2" --dtype bfloat16
expect "--dtype bfloat16" "${out}" "unknown --dtype 'bfloat16'"
never n2 "--dtype bfloat16"
run 2 0 "${floe}" export-hf "${h5}" --out "${work}/n3" --max-shard-size 0
expect "--max-shard-size 0" "${out}" '^floe: --max-shard-size must be > 0'
never n3 "--max-shard-size 0"
run 2 0 "${floe}" export-hf "${h5}" --out "${work}/n4" --max-shard-size 5XB
expect "--max-shard-size 5XB" "${out}" 'max-shard-size.*5XB'
never n4 "--max-shard-size 5XB"
mkdir -p "${work}/not-a-checkpoint"
run 1 2 "${floe}" export-hf "${work}/not-a-checkpoint" --out "${work}/n5"
expect "not a checkpoint" "${out}" '^floe: error: .*not-a-checkpoint.*manifest'
never n5 "a directory that is not a checkpoint"
run 1 0 "${floe}" export-hf "${work}/no-such-dir" --out "${work}/n6"
expect "missing checkpoint" "${out}" '^floe: error: .*no-such-dir'
never n6 "a missing checkpoint"
run 1 0 "${floe}" export-hf "${work}/e-1-h5" --out "${work}/n7"
expect "HF dir as checkpoint" "${out}" '^floe: error: .*e-1-h5.*manifest'
never n7 "an HF directory given as the checkpoint"
run 1 0 "${floe}" export-hf "${h5}" --out "${work}/n8" --copy "${work}/no-such.json"
expect "--copy missing" "${out}" '^floe: error: --copy .*no-such\.json: no such file'
never n8 "--copy of a missing file"
h5_before="$(snapshot "${h5}")"
run 1 0 "${floe}" export-hf "${h5}" --out "${h5}" --force
expect "--out the checkpoint" "${out}" 'is the checkpoint itself'
[[ "$(snapshot "${h5}")" == "${h5_before}" ]] || fail "--out CKPT changed the checkpoint"
run 2 0 "${floe}" export-hf "${h5}"
expect "no --out" "${out}" "out.*required"
echo "bad input: non-empty --out, --dtype, --max-shard-size, not a checkpoint, --copy: nothing written"

# --force replaces the export there and keeps other files.
run 0 3 "${floe}" export-hf "${mp}" --out "${work}/busy" --force --max-shard-size 1kB
[[ ! -e "${work}/busy/model.safetensors" ]] || fail "--force left the old model.safetensors"
[[ "$(cat "${work}/busy/keep.txt")" == keep ]] || fail "--force removed keep.txt"
rm "${work}/busy/keep.txt"
same_files "${work}/busy" "${work}/sh1"
echo "--force: the old export replaced, other files kept"

rm -rf "${work}"
echo "floe export-hf / verify / diff on Hugging Face directories: all checks passed"
