#!/usr/bin/env python3
"""Reads an fmgpu checkpoint the way a PyTorch user would, without fmgpu:
a plain parse of the safetensors header (8-byte little-endian length, JSON),
each tensor read with torch.frombuffer when torch is installed, else with
numpy (one of the two is needed: python3-torch or python3-numpy on Debian).
Prints one JSON object: the fmgpu metadata, and per tensor its
dtype, shape and float64 sum, which train/torch_test.go compares with
fmgpu's own reading. With --torch-module it also loads the weights into an
equivalent torch.nn.Sequential (Linear + SiLU) via load_state_dict.

Usage: read_checkpoint.py CHECKPOINT [--torch-module]
"""
import json
import struct
import sys


def main():
    path = sys.argv[1]
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    try:
        import torch
        def load(dtype, shape, buf):
            assert dtype == "F32"
            return torch.frombuffer(bytearray(buf), dtype=torch.float32).reshape(shape)
        def total(t):
            return float(t.double().sum())
        lib = "torch " + torch.__version__
    except ImportError:
        try:
            import numpy as np
        except ImportError:
            sys.exit("read_checkpoint.py: needs torch or numpy (python3-torch or python3-numpy on Debian)")
        def load(dtype, shape, buf):
            assert dtype == "F32"
            return np.frombuffer(buf, dtype="<f4").reshape(shape)
        def total(t):
            return float(t.astype("float64").sum())
        lib = "numpy " + np.__version__
    out = {"library": lib, "fmgpu": json.loads(meta["fmgpu"]), "format": meta.get("format"), "tensors": {}}
    state = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        t = load(info["dtype"], info["shape"], data[b:e])
        out["tensors"][name] = {"dtype": info["dtype"], "shape": info["shape"], "sum": total(t)}
        if "." in name and not name.startswith(("ema.", "optim.")):
            state[name] = t
    if "--torch-module" in sys.argv[2:]:
        import torch.nn as nn
        cfg = out["fmgpu"]["config"]["model"]
        dims = [state["layers.0.weight"].shape[1]] + cfg["hidden"] + [cfg["dim"]]
        mods = []
        for i in range(len(dims) - 1):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                mods.append(nn.SiLU())
        net = nn.Sequential(*mods)
        # fmgpu's layers.i are the i-th Linear; Sequential numbers SiLUs too
        net.load_state_dict({k.replace("layers.%s." % k.split(".")[1], "%d." % (2 * int(k.split(".")[1]))): v
                             for k, v in state.items()})
        out["torch_module"] = str(net).replace("\n", " ")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
