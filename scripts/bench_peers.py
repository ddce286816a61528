#!/usr/bin/env python3
"""The peers of `floe bench`, measured side by side in one run: each rank
writes and reads its share of the same synthetic state (the shapes floe bench
uses: F32 [rows, 256] tensors in dim-0 shards) with

  raw      plain os.write of every tensor's bytes, fsync (the baseline)
  torch    torch.save / torch.load of the rank's state dict (what
           DeepSpeed-based trainers do), fsync after the save
  h5py     one HDF5 file per rank, a dataset per tensor, fsync after close
  dcp      torch.distributed.checkpoint save/load over gloo, when the torch
           at hand has it (reported as unavailable, with the reason, if not)

interleaved over repetitions, the order rotated each repetition (each peer
takes every position equally often, as in floe bench), page cache dropped
(posix_fadvise) before the reads. Every write goes to a new file (a new
directory for dcp) and the previous repetition's is removed once it is
written, as a checkpoint replaces the one before. Each time is the slowest rank's (a gloo all-reduce). Prints medians
and throughput ratios to raw of the same run, like floe bench.

Run under mpirun (ranks from OMPI_COMM_WORLD_*; rendezvous over TCP on
127.0.0.1:$FLOE_PEERS_PORT, default 29517) or alone:
  mpirun -np 2 python3 scripts/bench_peers.py --dir /tmp/peers --size 1GiB
"""
import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time

import numpy as np


def parse_size(text):
    m = re.fullmatch(r"(\d+)\s*([KMGT]i?)?B?", text)
    if not m:
        raise SystemExit(f"bench_peers: bad --size {text!r}")
    n, unit = int(m.group(1)), m.group(2) or ""
    power = " KMGT".index(unit[0]) if unit else 0
    return n * (1024 if unit.endswith("i") else 1000) ** power


def build_share(total, count, rank, size):
    """This rank's dim-0 shards, as floe bench builds them."""
    per = max(total // count // 4, 1)
    cols = 256 if per >= 256 else per
    rows = max(per // cols, 1)
    begin, end = rows * rank // size, rows * (rank + 1) // size
    out = {}
    for t in range(count):
        i = np.arange((end - begin) * cols, dtype=np.uint64)
        out[f"layer.{t}.weight"] = (((i * 2654435761 + t) % 1000) * 0.001).astype(
            np.float32).reshape(end - begin, cols)
    return out


def drop_cache(path):
    for root, _, files in os.walk(path):
        for f in files:
            fd = os.open(os.path.join(root, f), os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--tensors", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))

    try:
        import torch
        import torch.distributed as dist
    except ImportError as e:
        raise SystemExit(f"bench_peers: needs torch (Debian: apt-get install python3-torch): {e}")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", os.environ.get("FLOE_PEERS_PORT", "29517"))
    dist.init_process_group("gloo", rank=rank, world_size=size)

    def slowest(fn):
        dist.barrier()
        start = time.perf_counter()
        fn()
        t = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.item()

    unavailable = {}
    try:
        import h5py
    except ImportError as e:
        h5py = None
        unavailable["h5py"] = str(e)
    dcp = None
    try:
        import torch.distributed.checkpoint as dcp
    except Exception as e:  # noqa: BLE001 - any import failure means "not here"
        unavailable["dcp"] = (f"torch {torch.__version__} has no usable "
                              f"torch.distributed.checkpoint: {type(e).__name__}: {e}")
        try:  # 1.13's prototype, for the record
            import torch.distributed._shard.checkpoint  # noqa: F401
        except Exception as e2:  # noqa: BLE001
            unavailable["dcp"] += (f"; its prototype torch.distributed._shard.checkpoint "
                                   f"fails to import: {type(e2).__name__}: {e2}")

    total_bytes = parse_size(args.size)
    share = build_share(total_bytes, args.tensors, rank, size)
    tshare = {k: torch.from_numpy(v) for k, v in share.items()}
    mine = sum(v.nbytes for v in share.values())
    t = torch.tensor([mine], dtype=torch.int64)
    dist.all_reduce(t)
    total = t.item()

    base = os.path.join(args.dir, "peers")
    if rank == 0:
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
    dist.barrier()
    rep = [0]  # the repetition running: each writes new files

    def path(kind, r=None):
        r = rep[0] if r is None else r
        if kind == "dcp":
            return os.path.join(base, f"dcp.{r}")
        return os.path.join(base, f"{kind}.{r}.rank{rank}")

    def replaced(kind):
        """Removes the previous repetition's files of `kind` (not timed)."""
        old = path(kind, rep[0] - 1)
        if kind == "dcp":
            dist.barrier()
            if rank == 0:
                shutil.rmtree(old, ignore_errors=True)
        elif os.path.exists(old):
            os.remove(old)

    def raw_write():
        fd = os.open(path("raw"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        for v in share.values():
            os.write(fd, memoryview(v).cast("B"))
        os.fsync(fd)
        os.close(fd)

    def raw_read():
        fd = os.open(path("raw"), os.O_RDONLY)
        for v in share.values():
            os.readv(fd, [memoryview(v).cast("B")])
        os.close(fd)

    def torch_save():
        with open(path("torch"), "wb") as f:
            torch.save(tshare, f)
            f.flush()
            os.fsync(f.fileno())

    def torch_load():
        # As trainers load: new tensors. weights_only where this torch has
        # it (the safe unpickler; these files hold tensors only).
        if "weights_only" in torch.load.__code__.co_varnames:
            torch.load(path("torch"), weights_only=True)
        else:
            torch.load(path("torch"))

    def h5_write():
        with h5py.File(path("h5py"), "w") as f:
            for k, v in share.items():
                f.create_dataset(k, data=v)
        fsync_path(path("h5py"))

    def h5_read():
        with h5py.File(path("h5py"), "r") as f:
            for k, v in share.items():
                f[k].read_direct(v)

    # DCP's current names (torch >= 2.2), else the older ones. Its
    # FileSystemWriter fsyncs the files it writes (sync_files=True).
    dcp_save_fn = getattr(dcp, "save", None) or getattr(dcp, "save_state_dict", None)
    dcp_load_fn = getattr(dcp, "load", None) or getattr(dcp, "load_state_dict", None)

    # Plain tensors under the same name on every rank are, to DCP, one
    # replicated tensor: it would save rank 0's copy only. Each rank's shards
    # get their own names, so every rank writes and reads its share.
    dshare = {f"{k}.rank{rank}": v for k, v in tshare.items()}

    def dcp_save():
        dcp_save_fn(dshare, storage_writer=dcp.FileSystemWriter(path("dcp")))

    def dcp_load():
        dcp_load_fn(dshare, storage_reader=dcp.FileSystemReader(path("dcp")))

    ops = [("raw", raw_write, raw_read), ("torch", torch_save, torch_load)]
    if h5py:
        ops.append(("h5py", h5_write, h5_read))
    if dcp:
        ops.append(("dcp", dcp_save, dcp_load))
    samples = {}
    for r in range(args.repeat):
        rep[0] = r
        order = ops[r % len(ops):] + ops[:r % len(ops)]
        for name, write, _ in order:
            samples.setdefault((name, "write"), []).append(slowest(write))
            replaced(name)
        dist.barrier()
        drop_cache(base)
        for name, _, read in order:
            samples.setdefault((name, "read"), []).append(slowest(read))
        if rank == 0:
            print(f"repetition {r + 1}/{args.repeat} done", flush=True)

    results = []
    if rank == 0:
        print(f"\n{size} ranks, {total / 1e9:.3f} GB in {args.tensors} tensors, "
              f"{args.repeat} repetitions, torch {torch.__version__}")
        print(f"{'peer':<8} {'op':<6} {'median s':>10} {'GB/s':>9} {'vs raw':>8}")
        for (name, op), times in samples.items():
            m = statistics.median(times)
            raw = statistics.median(samples[("raw", op)])
            print(f"{name:<8} {op:<6} {m:10.3f} {total / m / 1e9:9.3f} {raw / m:8.3f}")
            results.append({"peer": name, "op": op, "median_s": m, "all_s": times,
                            "gb_per_s": total / m / 1e9, "throughput_vs_raw": raw / m})
        for name, why in unavailable.items():
            print(f"{name}: not measured: {why}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"ranks": size, "bytes": total, "tensors": args.tensors,
                           "repeat": args.repeat, "torch": torch.__version__,
                           "results": results, "unavailable": unavailable}, f, indent=1)
    dist.barrier()
    if rank == 0:
        shutil.rmtree(base, ignore_errors=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
