#!/usr/bin/env bash
# CTest `floe_cli_checkpoints`: floe list, inspect, verify and diff on
# checkpoints that cli_fixture saves with the hdf5 and mpiio engines at
# several world sizes, run alone and under mpirun (-np 2 and 3): outputs,
# exit codes, and that every rank count prints the same report once.
#
# Usage: check_checkpoint_commands.sh FLOE CLI_FIXTURE MPIEXEC WORKDIR
set -euo pipefail
(($# == 4)) || { echo "usage: $0 FLOE CLI_FIXTURE MPIEXEC WORKDIR" >&2; exit 2; }
floe="$1" fixture="$2" mpiexec="$3" work="$4"
py=/usr/bin/python3
[[ -x "${py}" ]] || py=python3
# What CTest's environment sets, for runs by hand.
export OMPI_ALLOW_RUN_AS_ROOT="${OMPI_ALLOW_RUN_AS_ROOT:-1}"
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}"
export OMPI_MCA_rmaps_base_oversubscribe="${OMPI_MCA_rmaps_base_oversubscribe:-1}"

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect NAME TEXT PATTERN: TEXT has a line matching the extended regex.
expect() {
  grep -Eq -- "$3" <<<"$2" || { printf '%s\n' "$2" >&2; fail "$1: no line matches '$3'"; }
}
expect_not() {
  if grep -Eq -- "$3" <<<"$2"; then printf '%s\n' "$2" >&2; fail "$1: a line matches '$3'"; fi
}
# run WANT_RC NP CMD...: runs CMD (under mpirun -np NP unless NP is 0) and
# leaves its stdout and stderr in $out; fails unless it exits WANT_RC.
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
  [[ "${out}" != *$'\r'* ]] || fail "'${cmd[*]}' drew a progress line without a terminal"
}
# same_everywhere WANT_RC CMD...: the same output alone and at -np 2 and 3.
same_everywhere() {
  local want="$1"
  shift
  run "${want}" 0 "$@"
  local serial="${out}"
  for np in 2 3; do
    run "${want}" "${np}" "$@"
    [[ "${out}" == "${serial}" ]] ||
      { diff <(echo "${serial}") <(echo "${out}") >&2 || true; fail "'$*' at -np ${np} differs from serial"; }
  done
  out="${serial}"
}
json_check() {  # json_check TEXT PYTHON-ASSERTIONS (on d)
  "${py}" -c "import json,sys; d=json.load(sys.stdin); $2" <<<"$1" || fail "JSON check '$2'"
}

rm -rf "${work}"
mkdir -p "${work}"
save() { run 0 "$1" "${fixture}" "${@:2}"; }
save 2 hdf5 "${work}/h5" 1
save 2 hdf5 "${work}/h5" 2                       # latest: global_step_2
save 3 mpiio "${work}/mp" 1 --partition flat
save 1 mpiio "${work}/changed" 1 --add model/model.embed.weight 100 0.5
save 2 hdf5 "${work}/small" 1 --add model/model.embed.weight 100 0.0001
h5="${work}/h5/global_step_2" mp="${work}/mp/global_step_1"

# ---- list ---------------------------------------------------------------
mkdir "${work}/h5/.staging-global_step_3"
mkdir "${work}/h5/.deleting-global_step_0.1"   # retention's name when .deleting-<tag> is taken
cp -r "${work}/h5/global_step_1" "${work}/h5/global_step_1.corrupt"
same_everywhere 0 "${floe}" list "${work}/h5"
expect list "${out}" '^NAME +STEP +EPOCH +ENGINE +WORLD +SIZE +STATE$'
expect list "${out}" '^global_step_1 +1 +1 +hdf5 +2 +[0-9.]+ KiB +ok$'
expect list "${out}" '^global_step_2 +2 +1 +hdf5 +2 +[0-9.]+ KiB +latest$'
expect list "${out}" '^global_step_1\.corrupt +1 +1 +hdf5 +2 .*corrupt \(set aside\)$'
expect list "${out}" '^\.staging-global_step_3 +3 +- .*incomplete$'
expect list "${out}" '^\.deleting-global_step_0\.1 +0 +- .*incomplete \(being deleted\)$'
[[ -d "${work}/h5/.staging-global_step_3" ]] || fail "list removed a staging directory"
run 0 2 "${floe}" list --json "${work}/h5"
json_check "${out}" 'assert d["latest"] == "global_step_2", d
s = {c["name"]: c["state"] for c in d["checkpoints"]}
assert s["global_step_1"] == "ok" and s["global_step_2"] == "latest", s
assert s["global_step_1.corrupt"] == "corrupt (set aside)", s
assert s[".staging-global_step_3"] == "incomplete", s
assert s[".deleting-global_step_0.1"] == "incomplete (being deleted)", s
c = next(c for c in d["checkpoints"] if c["name"] == "global_step_2")
assert c["size_bytes"] > 0 and c["engine"] == "hdf5" and c["world_size"] == 2, c'
run 1 0 "${floe}" list "${work}/no-such-dir"
expect "list missing" "${out}" "^floe: error: no output directory ${work}/no-such-dir$"
run 1 2 "${floe}" list "${work}/no-such-dir"
expect "list missing -np 2" "${out}" "no output directory ${work}/no-such-dir"

# ---- inspect ------------------------------------------------------------
same_everywhere 0 "${floe}" inspect "${h5}"
expect inspect "${out}" '^engine +hdf5$'
expect inspect "${out}" '^world size +2$'
expect inspect "${out}" '^  model/model\.embed\.weight +F32 +\[37,16\] +2 +2\.3 KiB$'
expect inspect "${out}" '^  model/model\.scale +F32 +\[\] +1 '
expect inspect "${out}" '^  lr += +0\.00025$'
expect inspect "${out}" '^  rank 1 +rng +checkpoint\.h5 '
expect inspect "${out}" '"run": "test"'
run 0 3 "${floe}" inspect --regions "${mp}"
expect "inspect --regions" "${out}" '^      rank 2 +flat\[[0-9]+:592\) +data\.bin +offset [0-9]+ +nbytes [0-9]+$'
run 0 0 "${floe}" inspect --json "${mp}"
json_check "${out}" 'assert d["engine"] == "mpiio" and d["world_size"] == 3
assert len(d["tensors"]) == 12, len(d["tensors"])'
run 1 0 "${floe}" inspect "${work}/h5"
expect "inspect no manifest" "${out}" "no checkpoint at ${work}/h5 \(no manifest.json"

# ---- verify -------------------------------------------------------------
for ckpt in "${h5}" "${mp}"; do
  for np in 0 2 3; do
    run 0 "${np}" "${floe}" verify "${ckpt}"
    expect "verify ${np}" "${out}" "^verify ${ckpt}: ok$"
    expect "verify ${np}" "${out}" '^  [0-9]+ pieces, [0-9]+ blobs, .* checked in '
  done
done
mkdir "${work}/bad"
cp -r "${mp}" "${work}/bad/"
bad="${work}/bad/global_step_1"
# Flip one byte inside the piece rank 1 wrote of the embedding's exp_avg.
"${py}" - "${bad}" <<'PY'
import json, sys
d = sys.argv[1]
m = json.load(open(d + "/manifest.json"))
t = next(t for t in m["tensors"] if t["key"] == "optimizer/model.embed.weight/exp_avg")
p = next(p for p in t["pieces"] if p["rank"] == 1)
with open(d + "/" + p["file"], "r+b") as f:
    f.seek(p["offset"] + 5)
    b = f.read(1)
    f.seek(p["offset"] + 5)
    f.write(bytes([b[0] ^ 0x40]))
PY
for np in 0 2 3; do
  run 1 "${np}" "${floe}" verify "${bad}"
  expect "verify flipped ${np}" "${out}" '^checksum mismatch in data\.bin for tensor "optimizer/model\.embed\.weight/exp_avg" \(piece flat\[[0-9]+:[0-9]+\) written by rank 1\)$'
  expect "verify flipped ${np}" "${out}" "^verify ${bad}: FAILED$"
  expect "verify flipped ${np}" "${out}" '^floe: verify: 1 problem$'
done
mkdir "${work}/short"
cp -r "${mp}" "${work}/short/"
truncate -s -100 "${work}/short/global_step_1/data.bin"
run 1 2 "${floe}" verify "${work}/short/global_step_1"
expect "verify truncated" "${out}" '^floe: error: .*data\.bin is [0-9]+ bytes but the manifest records [0-9]+ \(truncated\)$'
# A manifest edited into other valid JSON (the epoch's digit): every command
# that reads it refuses it by its self-checksum, naming the file.
mkdir "${work}/edited"
cp -r "$(dirname "${h5}")" "${work}/edited/"
edited="${work}/edited/$(basename "$(dirname "${h5}")")/$(basename "${h5}")"
"${py}" - "${edited}/manifest.json" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
i = s.index('"epoch":') + len('"epoch":')
open(p, "w").write(s[:i] + str((int(s[i]) + 1) % 10) + s[i + 1:])
PY
damaged='manifest\.json: field manifest_xxh3: the manifest is damaged: its content hashes to xxh3:[0-9a-f]{16}, not the recorded xxh3:[0-9a-f]{16}$'
for cmd in verify inspect; do
  run 1 0 "${floe}" "${cmd}" "${edited}"
  expect "${cmd} edited manifest" "${out}" "^floe: error: ${edited}/${damaged}"
done
run 1 2 "${floe}" export-hf "${edited}" --out "${work}/edited_hf"
expect "export-hf edited manifest" "${out}" "${edited}/${damaged}"
run 0 0 "${floe}" list "$(dirname "${edited}")"
expect "list edited manifest" "${out}" "bad manifest: ${edited}/${damaged}"

# ---- diff ---------------------------------------------------------------
# hdf5 on 2 ranks (dim-0 shards) against mpiio on 3 (flat ranges).
same_everywhere 0 "${floe}" diff "${h5}" "${mp}"
expect diff "${out}" "^a: ${h5} \(hdf5, step 2, epoch 1, world size 2\)$"
expect diff "${out}" "^b: ${mp} \(mpiio, step 1, epoch 1, world size 3\)$"
expect diff "${out}" '^tensors: 12 compared, 0 differ \(0 elements\), 0 '
expect diff "${out}" '^scalars: 4 compared, 0 differ'
expect diff "${out}" '^result: equal \(bitwise\)$'
run 0 3 "${floe}" diff --chunk-bytes 16 "${h5}" "${mp}"   # many chunks per tensor
# One changed element (index 100 of [37,16] is [6,4]), at any chunking.
for args in "0" "2 --chunk-bytes 64" "3 --chunk-bytes 8"; do
  read -r np extra <<<"${args}"
  run 1 "${np}" "${floe}" diff ${extra} "${mp}" "${work}/changed/global_step_1"
  expect "diff changed ${args}" "${out}" '^model/model\.embed\.weight\[6,4\]: a=-?[0-9.]+ b=-?[0-9.]+$'
  expect "diff changed ${args}" "${out}" '^model/model\.embed\.weight: 1 of 592 elements differ$'
  expect "diff changed ${args}" "${out}" '^tensors: 12 compared, 1 differ \(1 element\)'
  expect "diff changed ${args}" "${out}" '^result: different \(bitwise\)$'
done
small="${work}/small/global_step_1"
run 1 2 "${floe}" diff "${h5}" "${small}"
run 0 2 "${floe}" diff --atol 1e-3 "${h5}" "${small}"
expect "diff --atol" "${out}" '^result: equal \(atol 0\.001, rtol 0\)$'
run 1 0 "${floe}" diff --atol 1e-6 "${h5}" "${small}"
expect "diff --atol small" "${out}" '^model/model\.embed\.weight: 1 of 592 elements differ \(max \|a-b\| 9\.9[0-9]*e-05\)$'
run 1 0 "${floe}" diff --max-report 0 "${mp}" "${work}/changed/global_step_1"
expect_not "diff --max-report 0" "${out}" '\[6,4\]'
# Per-rank blobs only with --blobs: rank 2 saved one only in the 3-rank save.
run 1 3 "${floe}" diff --blobs "${h5}" "${mp}"
expect "diff --blobs" "${out}" '^blob "rng" of rank 2: only in b$'
expect "diff --blobs" "${out}" '^blobs: 2 compared, 1 differ'
# A tensor missing on one side.
mkdir "${work}/fewer"
cp -r "${mp}" "${work}/fewer/"
"${py}" - "${work}/fewer/global_step_1/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["tensors"] = [t for t in m["tensors"] if t["key"] != "model/model.ids"]
# An edited manifest no longer matches its self-checksum (format version 2);
# written as format version 1, which has none and is still read.
del m["manifest_xxh3"]
m["format_version"] = 1
json.dump(m, open(sys.argv[1], "w"))
PY
run 1 2 "${floe}" diff "${h5}" "${work}/fewer/global_step_1"
expect "diff fewer" "${out}" '^tensor model/model\.ids: only in a$'
run 2 0 "${floe}" diff "${h5}"
run 2 0 "${floe}" diff --atol -1 "${h5}" "${mp}"
expect "diff --atol -1" "${out}" 'atol must be a finite number >= 0'
run 1 0 "${floe}" diff "${h5}" "${work}/nowhere"
expect "diff missing" "${out}" "^floe: error: no checkpoint at ${work}/nowhere"

# ---- hdf5 storage offsets ---------------------------------------------------
# A checkpoint as Floe wrote it before recording them (its datasets are
# opened and checked) verifies and diffs equal to one with them.
save 3 hdf5 "${work}/h5old" 2 --without-storage-offsets
old="${work}/h5old/global_step_2"
grep -q '"storage_offset":' "${h5}/manifest.json" || fail "no storage_offset in ${h5}"
! grep -q '"storage_offset":' "${old}/manifest.json" || fail "storage_offset in ${old}"
for np in 0 2 3; do
  run 0 "${np}" "${floe}" verify "${old}"
  expect "verify without offsets ${np}" "${out}" "^verify ${old}: ok$"
done
same_everywhere 0 "${floe}" diff "${h5}" "${old}"
expect "diff with/without offsets" "${out}" '^result: equal \(bitwise\)$'
run 0 2 "${floe}" diff "${old}" "${mp}"
expect "diff without offsets vs mpiio" "${out}" '^result: equal \(bitwise\)$'
# An offset past the data file's end: every command names the tensor and field.
mkdir "${work}/offset"
cp -r "$(dirname "${h5}")" "${work}/offset/"
far="${work}/offset/$(basename "$(dirname "${h5}")")/$(basename "${h5}")"
"${py}" - "${far}/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
t = next(t for t in m["tensors"] if t["key"] == "model/model.embed.weight")
t["storage_offset"] = m["files"][0]["size"] - 100
del m["manifest_xxh3"]  # edited: written as format version 1 (no self-checksum)
m["format_version"] = 1
json.dump(m, open(sys.argv[1], "w"))
PY
beyond='field tensors\[[0-9]+\]\.storage_offset: tensor "model/model\.embed\.weight": its 2368 bytes at offset [0-9]+ end at byte [0-9]+, beyond the [0-9]+ bytes files records for "checkpoint\.h5"$'
run 1 2 "${floe}" verify "${far}"
expect "verify offset beyond" "${out}" "${far}/manifest\.json: ${beyond}"
run 1 0 "${floe}" diff "${h5}" "${far}"
expect "diff offset beyond" "${out}" "${beyond}"
echo PASS
