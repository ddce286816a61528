#!/usr/bin/env bash
# CTest `floe_bench`: `floe bench` in its three modes at 2 ranks on a small
# state, and that what it reports holds together: every row of the table,
# one time per repetition, medians of those times, each load paired with
# the raw read of its own checkpoint (per repetition and order-balanced),
# and bad arguments refused. Timings themselves are not checked: they
# belong in BENCHMARKS.md, not in a test.
#
# Usage: check_floe_bench.sh FLOE MPIEXEC PYTHON3 WORKDIR
set -euo pipefail
(($# == 4)) || { echo "usage: $0 FLOE MPIEXEC PYTHON3 WORKDIR" >&2; exit 2; }
floe="$1" mpiexec="$2" python="$3" work="$4"

fail() { echo "FAIL: $*" >&2; exit 1; }
expect() {
  grep -Eq -- "$3" <<<"$2" || { printf '%s\n' "$2" >&2; fail "$1: no line matches '$3'"; }
}
rm -rf "${work}"
mkdir -p "${work}"

# check_json MODE FILE: the JSON's structure and arithmetic, per mode.
check_json() {
  "${python}" - "$1" "$2" <<'EOF'
import json, math, statistics, sys

mode, path = sys.argv[1], sys.argv[2]
d = json.load(open(path))
problems = []
def check(ok, what):
    if not ok:
        problems.append(what)

check(d["ranks"] == 2 and d["repeat"] == 2 and d["tensors"] == 8, "header: %r" % d)
check(d["bytes"] == 4 << 20, "bytes %r" % d["bytes"])
rows = {(r.get("engine"), r["op"]): r for r in d["results"]}
for key, r in rows.items():
    times = r["all_s"]
    check(len(times) == 2 and all(t > 0 for t in times), "%s: times %r" % (key, times))
    check(math.isclose(r["median_s"], statistics.median(times)), "%s: median" % (key,))
if mode == "io":
    want = {("raw", "write"), ("rewrite", "write"), ("hdf5", "write"), ("mpiio", "write"),
            ("raw", "read"), ("raw@hdf5", "read"), ("hdf5", "read"),
            ("raw@mpiio", "read"), ("mpiio", "read")}
    row = "hdf5:load_exchange=true"  # an --engines row with a config key
    want |= {(row, "write"), (row, "read"), ("raw@" + row, "read")}
    # --control: per engine, a raw read in the load's place, paired alike.
    controls = ["control@" + e for e in ("hdf5", "mpiio", row)]
    want |= {(c, "read") for c in controls} | {("raw@" + c, "read") for c in controls}
    check(set(rows) == want, "rows %r" % sorted(rows))
    for key, r in rows.items():  # all ranks' CPU seconds, per repetition
        cpu = r["cpu_all_s"]
        check(len(cpu) == 2 and all(c >= 0 for c in cpu), "%s: cpu %r" % (key, cpu))
        check(math.isclose(r["cpu_median_s"], statistics.median(cpu)), "%s: cpu median" % (key,))
    for engine in ("hdf5", "mpiio", row) + tuple(controls):
        load, raw = rows[(engine, "read")], rows[("raw@" + engine, "read")]
        check(load["baseline"] == "raw@" + engine, engine + ": baseline " + load["baseline"])
        checkpoint = engine.split("@")[-1]
        # raw@ reads every byte of the checkpoint, the load the state's; a
        # control read all of them too.
        check(raw["bytes"] == rows[("raw@" + checkpoint, "read")]["bytes"],
              engine + ": raw@ bytes %r" % raw["bytes"])
        if engine in controls:
            check(load["bytes"] == raw["bytes"], engine + ": bytes %r" % load["bytes"])
        else:
            check(raw["bytes"] > load["bytes"] == d["bytes"],
                  engine + ": bytes %r, raw@ %r" % (load["bytes"], raw["bytes"]))
        scale = load["bytes"] / raw["bytes"]
        pairs = [b * scale / a for a, b in zip(load["all_s"], raw["all_s"])]
        got = load["paired_vs_raw"]
        check(len(got) == 2 and all(math.isclose(x, y) for x, y in zip(got, pairs)),
              engine + ": paired %r, want %r" % (got, pairs))
        check(math.isclose(load["paired_vs_raw_balanced"], math.sqrt(pairs[0] * pairs[1])),
              engine + ": balanced %r" % load["paired_vs_raw_balanced"])
        check(math.isclose(load["throughput_vs_raw"],
                           raw["median_s"] * scale / load["median_s"]),
              engine + ": vs raw@")
elif mode == "async":
    check({k[0] for k in rows} == {"hdf5", "mpiio"}, "rows %r" % sorted(rows))
    check(len(d["memcpy_all_s"]) == 2 and d["memcpy_median_s"] > 0, "memcpy")
    for r in d["results"]:
        check(r["op"] == "async_save_blocking" and len(r["wait_all_s"]) == 2,
              "async row %r" % r)
        check(math.isclose(r["vs_memcpy"], r["median_s"] / d["memcpy_median_s"]),
              "vs_memcpy of " + r["engine"])
elif mode == "export":
    ops = {r["op"] for r in d["results"]}
    for op in ("raw write", "raw read", "export_hf", "hf engine save", "export-hf"):
        check(op in ops, "no row " + op)
    check(len(d["memory"]) == 2, "memory rows %r" % d["memory"])
if problems:
    print("\n".join(problems))
    sys.exit(1)
EOF
}

# run NAME ARGS...: floe bench at 2 ranks (4 MiB in 8 tensors unless ARGS
# say otherwise); prints its output.
run() {
  local args=("${@:2}")
  [[ " ${args[*]} " == *" --size "* ]] || args+=(--size 4MiB --tensors 8)
  timeout 120 "${mpiexec}" -np 2 "${floe}" bench --dir "${work}/scratch" --repeat 2 \
    "${args[@]}" || fail "$1 exited $?"
}

out="$(run io --json "${work}/io.json" --engines hdf5,mpiio,hdf5:load_exchange=true --control)"
printf '%s\n' "${out}"
expect io "${out}" '^raw@hdf5 +read '
expect io "${out}" '^mpiio +read '
# A row of its own for an engine with config keys (--engines NAME:KEY=VALUE).
expect io "${out}" '^hdf5:load_exchange=true +read '
expect io "${out}" '^raw@hdf5:load_exchange=true +read '
expect io "${out}" '^hdf5 +read vs raw@hdf5, paired per repetition: [0-9.]+ [0-9.]+; order-balanced [0-9.]+$'
expect io "${out}" '^control@mpiio +read vs raw@control@mpiio, paired per repetition: [0-9.]+ [0-9.]+; order-balanced [0-9.]+$'
check_json io "${work}/io.json" || fail "io JSON"

out="$(run async --async --json "${work}/async.json")"
expect async "${out}" '^mpiio save\(\) '
check_json async "${work}/async.json" || fail "async JSON"

# Tensors of one row (fewer rows than ranks): every rank holds some of them
# (it used to be the last rank alone, and rank 0's raw read failed while
# rank 1 waited for it forever).
out="$(run one-row --size 64KiB --tensors 64)"
expect one-row "${out}" '^mpiio +read '

# --export and the hf engine exist only in builds with the hf engine.
has_hf=0
"${floe}" --list-engines | grep -Eq '^hf ' && has_hf=1
if ((has_hf)); then
  out="$(run export --export --json "${work}/export.json")"
  expect export "${out}" '^export-hf '
  check_json export "${work}/export.json" || fail "export JSON"
fi

# scripts/bench_summary.py turns the JSON into BENCHMARKS.md's tables.
summary="$(dirname "$0")/../../scripts/bench_summary.py"
jsons=("${work}/io.json" "${work}/async.json")
((has_hf)) && jsons+=("${work}/export.json")
out="$("${python}" "${summary}" "${jsons[@]}")" || fail "bench_summary.py exited $?"
printf '%s\n' "${out}"
expect summary "${out}" '^### Save and load: 4 MiB in 8 tensors, medians of 2 repetitions$'
# Raw write, three saves, raw read, raw@hdf5 and hdf5's load, then its cell.
expect summary "${out}" '^\| 2 \| ([0-9.]+ \| ){7}[0-9.]+ / [0-9.]+ \[[0-9.]+-[0-9.]+\] \|'
# --control's rows: a column per engine, its cell as a load's.
expect summary "${out}" '^\| ranks \|.* \| control@mpiio vs raw@ / balanced \[paired range\] \|$'
# 18 cells: ranks, raw write, 3 saves, raw read, 3 per load, then 3 controls.
expect summary "${out}" '^\| 2( \| [^|]+){14}( \| [0-9.]+ / [0-9.]+ \[[0-9.]+-[0-9.]+\]){3} \|$'
expect summary "${out}" '^### Async save\(\) blocking: 4 MiB'

# Bad arguments: exit 2, a message naming the argument, and --dir (which a
# run empties) left as it was.
mkdir -p "${work}/keep"
echo data >"${work}/keep/precious"
bad_args() {  # bad_args PATTERN ARGS... (--size 1MiB unless ARGS give one)
  local args=("${@:2}")
  [[ " ${args[*]} " == *" --size "* ]] || args+=(--size 1MiB)
  set +e
  err="$("${floe}" bench --dir "${work}/keep" "${args[@]}" 2>&1)"
  rc=$?
  set -e
  ((rc == 2)) || fail "bench $*: exited ${rc}, want 2: ${err}"
  expect "bench ${*:2}" "${err}" "$1"
  [[ "$(cat "${work}/keep/precious")" == data ]] || fail "bench ${*:2} touched --dir"
}
bad_args 'repeat must be > 0' --repeat 0
bad_args 'tensors and --repeat must be > 0' --tensors 0
bad_args "--engines: 'nosuch' is not a registered engine \\(engines that save and load: hdf5, mpiio" \
  --engines hdf5,nosuch
((has_hf)) && bad_args "--engines: 'hf' is not a resumable engine" --engines hf
bad_args '--engines: no engine named' --engines ''
bad_args "--engines: 'hdf5:load_exchange': 'load_exchange' is not KEY=VALUE" \
  --engines hdf5:load_exchange
bad_args "--engines: 'hdf5:nosuch=1': .*nosuch" --engines hdf5:nosuch=1
bad_args "--engines: 'hdf5' is named twice" --engines hdf5,hdf5
bad_args "--engines: 'mpiio:type=hdf5': the bench sets type and output_dir" --engines mpiio:type=hdf5
bad_args "--engines: 'hdf5:load_exchange=true': --async measures engines by name alone" \
  --async --engines hdf5:load_exchange=true
bad_args '--size must be > 0' --size 0
((has_hf)) && bad_args '--buffer must be > 0' --export --buffer 0
# Refused by every rank alike, before --dir is emptied: a state so small
# that a rank would hold nothing.
set +e
err="$(timeout 60 "${mpiexec}" -np 2 "${floe}" bench --dir "${work}/keep" --size 1KiB \
  --tensors 1 2>&1)"
rc=$?
set -e
((rc != 0 && rc != 124)) || fail "a rank without bytes: exited ${rc}: ${err}"
expect "a rank without bytes" "${err}" '1 tensors leaves a rank of 2 with no bytes'
[[ "$(cat "${work}/keep/precious")" == data ]] || fail "a rank without bytes: --dir touched"
echo PASS
