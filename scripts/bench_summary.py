#!/usr/bin/env python3
"""Markdown tables for BENCHMARKS.md from `floe bench --json` files.

Usage: python3 scripts/bench_summary.py FILE.json... > summary.md

Reads what `floe bench` wrote (its plain, --async and --export modes) and
what scripts/bench_peers.py wrote, whatever the file names, and prints one
table per kind and state (size, tensor count), a row per rank count:
  - save/load: raw write and read in seconds; each engine's save as a
    throughput ratio to raw's write; each engine's load in seconds, against
    the raw read of its own checkpoint (raw@) as the ratio of medians and
    order-balanced (BENCHMARKS.md explains both), and the range of the
    repetitions' paired ratios;
  - async: how long save() blocks, as a multiple of a memcpy of the state;
  - export: each operation against a raw write;
  - peers: each peer's save and load against its own raw write and read.
Only the standard library: it runs wherever the benchmark ran.
"""
import json
import sys
from collections import defaultdict


def kind_of(doc):
    if "memcpy_median_s" in doc:
        return "async"
    if "memory" in doc:
        return "export"
    if any("peer" in r for r in doc.get("results", [])):
        return "peers"
    return "io"


def gib(n):
    return f"{n / 2**30:.4g} GiB" if n >= 2**30 else f"{n / 2**20:.4g} MiB"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def paired_cell(load):
    """A read's ratio to its raw@ read: of medians / order-balanced [paired range]."""
    balanced = load.get("paired_vs_raw_balanced")
    paired = load.get("paired_vs_raw") or []
    return (f"{load['throughput_vs_raw']:.2f} / "
            + (f"{balanced:.2f}" if balanced is not None else "-")
            + (f" [{min(paired):.2f}-{max(paired):.2f}]" if paired else ""))


def io_table(docs):
    engines = []
    for d in docs:
        for r in d["results"]:
            e = r["engine"]
            if r["op"] == "write" and e not in ("raw", "rewrite") and e not in engines:
                engines.append(e)
    # `floe bench --control`: a raw read in each load's place, paired alike.
    controls = [e for e in engines
                if any(r["engine"] == f"control@{e}" for d in docs for r in d["results"])]
    head = ["ranks", "raw write s"] + [f"{e} save" for e in engines] + ["raw read s"]
    for e in engines:
        head += [f"raw@{e} s", f"{e} load s", f"{e} vs raw@ / balanced [paired range]"]
    head += [f"control@{e} vs raw@ / balanced [paired range]" for e in controls]
    rows = []
    for d in sorted(docs, key=lambda d: d["ranks"]):
        by = {(r["engine"], r["op"]): r for r in d["results"]}
        row = [str(d["ranks"]), f"{by[('raw', 'write')]['median_s']:.3f}"]
        row += [f"{by[(e, 'write')]['throughput_vs_raw']:.2f}" if (e, "write") in by else "-"
                for e in engines]
        row.append(f"{by[('raw', 'read')]['median_s']:.3f}")
        for e in engines:
            load, raw = by.get((e, "read")), by.get((f"raw@{e}", "read"))
            if not load or not raw:
                row += ["-", "-", "-"]
                continue
            row += [f"{raw['median_s']:.3f}", f"{load['median_s']:.3f}", paired_cell(load)]
        row += [paired_cell(by[(f"control@{e}", "read")]) if (f"control@{e}", "read") in by
                else "-" for e in controls]
        rows.append(row)
    return table(head, rows)


def async_table(docs):
    engines = sorted({r["engine"] for d in docs for r in d["results"]})
    head = ["ranks", "memcpy s"]
    for e in engines:
        head += [f"{e} save() blocks s", "x memcpy", f"{e} background s"]
    rows = []
    for d in sorted(docs, key=lambda d: d["ranks"]):
        by = {r["engine"]: r for r in d["results"]}
        row = [str(d["ranks"]), f"{d['memcpy_median_s']:.4f}"]
        for e in engines:
            r = by.get(e)
            row += ([f"{r['median_s']:.4f}", f"{r['vs_memcpy']:.2f}", f"{r['wait_median_s']:.3f}"]
                    if r else ["-", "-", "-"])
        rows.append(row)
    return table(head, rows)


def ops_table(docs, name_key, ratio_key, ratio_title):
    names = []
    for d in docs:
        for r in d["results"]:
            key = (r.get(name_key, ""), r["op"]) if name_key else (r["op"],)
            if key not in names:
                names.append(key)
    head = ["ranks"] + [f"{' '.join(k).strip()} s ({ratio_title})" for k in names]
    rows = []
    for d in sorted(docs, key=lambda d: d["ranks"]):
        by = {((r.get(name_key, ""), r["op"]) if name_key else (r["op"],)): r
              for r in d["results"]}
        rows.append([str(d["ranks"])] + [
            f"{by[k]['median_s']:.3f} ({by[k][ratio_key]:.2f})" if k in by else "-"
            for k in names])
    return table(head, rows)


def main(paths):
    if not paths:
        sys.exit(__doc__.strip().splitlines()[2])
    groups = defaultdict(list)
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        groups[(kind_of(doc), doc["bytes"], doc["tensors"], doc.get("repeat"))].append(doc)
    titles = {"io": "Save and load", "async": "Async save() blocking",
              "export": "Hugging Face export", "peers": "Peers"}
    order = list(titles)
    for kind, size, tensors, repeat in sorted(groups, key=lambda g: (order.index(g[0]), g[1:])):
        docs = groups[(kind, size, tensors, repeat)]
        print(f"### {titles[kind]}: {gib(size)} in {tensors} tensors, "
              f"medians of {repeat} repetitions\n")
        if kind == "io":
            print(io_table(docs))
            print("\nSaves: throughput ratio to raw's write. Loads: seconds, and the ratio to "
                  "the raw read of the same checkpoint (of medians / order-balanced), with "
                  "the lowest and highest of the repetitions' paired ratios: how far one "
                  "repetition strays from another on this file system.")
            if tensors >= 1000:  # many small tensors: the cost per tensor
                for d in sorted(docs, key=lambda d: d["ranks"]):
                    cells = [f"{r['engine']} {r['op']} {r['median_s'] / tensors * 1e6:.1f}"
                             for r in d["results"]]
                    print(f"\nus per tensor at {d['ranks']} rank(s): " + ", ".join(cells))
        elif kind == "async":
            print(async_table(docs))
        elif kind == "export":
            print(ops_table(docs, None, "throughput_vs_raw_write", "vs raw write"))
        else:
            print(ops_table(docs, "peer", "throughput_vs_raw", "vs its raw"))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
