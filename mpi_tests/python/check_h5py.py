#!/usr/bin/env python3
"""Reads a Floe hdf5 checkpoint with h5py alone and compares it with what the
test expects. Usage: check_h5py.py <checkpoint.h5> <expected.json>

expected.json: {"tensors": {"<dataset>": {"dtype", "shape", "hex"}},
"scalars": {name: value}, "blobs": {"<dataset>": [bytes]}, "world_size": n,
"model_order": [names of /model's members in creation order]}.
Exits 0 when everything matches, 1 (listing the differences) otherwise.
"""
import json
import sys

import h5py
import numpy as np

# What h5py hands back for each Floe dtype (docs/hdf5_layout.md).
NUMPY_DTYPE = {
    "BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16,
    "I16": np.int16, "F16": np.float16, "BF16": np.uint16, "U32": np.uint32,
    "I32": np.int32, "F32": np.float32, "U64": np.uint64, "I64": np.int64,
    "F64": np.float64, "F8_E4M3": np.uint8, "F8_E5M2": np.uint8,
}


def text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def main(path, expected_path):
    with open(expected_path) as f:
        expected = json.load(f)
    problems = []
    with h5py.File(path, "r") as f:
        if text(f.attrs["floe_format"]) != "floe-hdf5":
            problems.append("root attribute floe_format is %r" % f.attrs["floe_format"])
        if "world_size" in expected and int(f.attrs["floe_world_size"]) != expected["world_size"]:
            problems.append("floe_world_size is %r" % f.attrs["floe_world_size"])
        json.loads(text(f.attrs["floe_metadata"]))
        for name, want in expected["tensors"].items():
            if name not in f:
                problems.append("%s: missing" % name)
                continue
            ds = f[name]
            if text(ds.attrs["floe_dtype"]) != want["dtype"]:
                problems.append("%s: floe_dtype %r" % (name, ds.attrs["floe_dtype"]))
            if ds.dtype != np.dtype(NUMPY_DTYPE[want["dtype"]]):
                problems.append("%s: h5py reads it as %s" % (name, ds.dtype))
            if list(ds.shape) != want["shape"]:
                problems.append("%s: shape %s" % (name, ds.shape))
            data = np.ascontiguousarray(ds[()])
            if data.tobytes().hex() != want["hex"]:
                problems.append("%s: values differ" % name)
        if "model_order" in expected and list(f["model"]) != expected["model_order"]:
            problems.append("list(f['model']) is %r, not creation order %r"
                            % (list(f["model"]), expected["model_order"]))
        for name, want in expected.get("scalars", {}).items():
            got = f["scalars"].attrs[name]
            if got != want:
                problems.append("scalar %s: %r != %r" % (name, got, want))
        for name, want in expected.get("blobs", {}).items():
            got = list(f[name][()])
            if got != want:
                problems.append("blob %s: %r != %r" % (name, got, want))
    for p in problems:
        print("check_h5py: " + p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
