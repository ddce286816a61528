"""Checks Floe's safetensors exports with safetensors' own (Rust) reader.

Usage: hf_reference_check.py <dir>, where <dir> holds the samples that
hf_reference_sample wrote (<sample>/ and <sample>.expected.json). For every
file: the reference reader opens it (which validates the header, offsets and
size), __metadata__ is {"format": "pt"}, the header is padded so 8 + N is a
multiple of 8, every tensor's data is aligned to its element size, and every
value equals the formula the sample was written with. numpy has no bfloat16,
so BF16 data is compared as raw bits, rounded from F32 to nearest even.
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

NUMPY = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
         "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}


def bf16_bits(f32):
    """Rounds float32 values to bfloat16 (nearest even), as uint16 bits."""
    b = f32.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def rounded(f32, dtype):
    """float32 values rounded to `dtype` (BF16 as uint16 bits)."""
    if dtype == "BF16":
        return bf16_bits(f32)
    return f32.astype(NUMPY[dtype])


def widened(values, dtype):
    """Values of `dtype` (BF16 as bits) as exact float64."""
    if dtype == "BF16":
        return (values.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return values.astype(np.float64)


def expected(t):
    i = np.arange(int(np.prod(t["shape"], dtype=np.int64)), dtype=np.int64)
    v = i * 37 + t["k"] * 11
    if t["dtype"] == "BOOL":
        return ((i * 37 + t["k"]) % 3 == 0).reshape(t["shape"])
    if t["dtype"] in ("F64", "F32", "F16", "BF16"):
        f = ((v % 1024).astype(np.float32) / np.float32(8) - np.float32(64)).astype(np.float32)
        # The state held the source dtype; the export converted from there.
        # Every value here fits F32 exactly, so one more rounding from it is
        # the same as rounding the exact value.
        held = widened(rounded(f, t["source"]), t["source"]).astype(np.float32)
        return rounded(held, t["dtype"]).reshape(t["shape"])
    return (v % 251).astype(NUMPY[t["dtype"]]).reshape(t["shape"])


def check_file(path, spec, problems):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    if (8 + n) % 8:
        problems.append(f"{path}: 8 + N = {8 + n} is not a multiple of 8")
    with safe_open(str(path), framework="np") as f:  # the reference validation
        if f.metadata() != {"format": "pt"}:
            problems.append(f"{path}: __metadata__ is {f.metadata()}")
        names = set(f.keys())
        has_bf16 = any(spec[k]["dtype"] == "BF16" for k in names)
        loaded = {} if has_bf16 else load_file(str(path))
        for name in names:
            t = spec[name]
            info = header[name]
            begin, end = info["data_offsets"]
            want = expected(t)
            if info["dtype"] != t["dtype"] or info["shape"] != t["shape"]:
                problems.append(f"{path}: {name} is {info['dtype']}{info['shape']}, "
                                f"expected {t['dtype']}{t['shape']}")
                continue
            if (8 + n + begin) % want.dtype.itemsize:
                problems.append(f"{path}: {name} starts at {8 + n + begin}, not aligned")
            if t["dtype"] == "BF16":
                got = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype="<u2").reshape(t["shape"])
            else:
                got = loaded[name] if loaded else f.get_tensor(name)
            if got.dtype != want.dtype or got.shape != want.shape or not np.array_equal(got, want):
                problems.append(f"{path}: {name} differs from the expected values")
    return names


def check_sample(root, sample, problems):
    spec = {t["name"]: t for t in json.loads((root / f"{sample}.expected.json").read_text())}
    d = root / sample
    index_path = d / "model.safetensors.index.json"
    if index_path.exists():
        index = json.loads(index_path.read_text())
        files = sorted(set(index["weight_map"].values()))
        total = sum(int(np.prod(t["shape"], dtype=np.int64)) *
                    (2 if t["dtype"] == "BF16" else np.dtype(NUMPY[t["dtype"]]).itemsize)
                    for t in spec.values())
        if index["metadata"]["total_size"] != total:
            problems.append(f"{index_path}: total_size {index['metadata']['total_size']} != {total}")
        if (d / "model.safetensors").exists():
            problems.append(f"{d}: both model.safetensors and an index")
    else:
        files = ["model.safetensors"]
    seen = set()
    for name in files:
        names = check_file(d / name, spec, problems)
        if index_path.exists():
            for t in names:
                if index["weight_map"].get(t) != name:
                    problems.append(f"{d / name}: {t} is not mapped to it by the index")
        seen |= names
    if seen != set(spec):
        problems.append(f"{d}: tensors {sorted(set(spec) ^ seen)} missing or unexpected")
    print(f"{d}: {len(files)} file(s), {len(seen)} tensors checked")


def main():
    root = Path(sys.argv[1])
    problems = []
    for sample in ("mixed", "sharded", "bf16", "f16"):
        check_sample(root, sample, problems)
    for p in problems:
        print("PROBLEM:", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
