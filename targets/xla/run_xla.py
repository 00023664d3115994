#!/usr/bin/env python3
"""Run a peftc `--target xla` artifact on XLA through JAX's PJRT client.

    python3 run_xla.py ARTIFACT_DIR [--inputs FILE.npz | NAME=FILE.npy ...] [--out DIR]
                       [--platform cpu|cuda|tpu] [--expect DIR]

ARTIFACT_DIR is what `peftc compile MODEL --target xla -o ARTIFACT_DIR` writes: model.mlir (a
StableHLO module), weights.safetensors and manifest.json. @main takes the model inputs first, then
the weights, in the order manifest.json lists. This script parses the module in JAX's MLIR context,
compiles it with the PJRT client of the backend there (the default one, or --platform), feeds the
inputs and weights to the first device, and writes one NAME.npy per output into --out. With
--expect DIR (NAME.npy files, e.g. from peftc's interpreter or onnxruntime) it prints each output's
relative error against them. Needs jax, numpy and ml_dtypes (a jax dependency: bfloat16, int4).
"""
import argparse
import json
import pathlib
import re
import struct
import sys

import jax
import jax.extend.backend
import ml_dtypes
import numpy as np

jax.config.update("jax_enable_x64", True)  # int64 inputs (token ids) stay int64 on the device

from jax._src.interpreters import mlir as jax_mlir  # noqa: E402
from jax._src.lib import xla_client  # noqa: E402
from jax._src.lib.mlir import ir  # noqa: E402

# StableHLO element types -> numpy dtypes; safetensors dtypes -> numpy dtypes.
ELEMENTS = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "bf16": ml_dtypes.bfloat16,
            "i1": np.bool_, "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64,
            "ui8": np.uint8, "ui16": np.uint16, "ui32": np.uint32, "ui64": np.uint64,
            "i4": ml_dtypes.int4, "ui4": ml_dtypes.uint4}
STORED = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
          "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
          "U16": np.uint16, "U32": np.uint32, "U64": np.uint64, "BOOL": np.bool_}


def tensor_type(text):
    """'tensor<2x16xi64>' -> ((2, 16), 'i64')."""
    *dims, elem = text[len("tensor<"):-1].split("x")
    return tuple(int(d) for d in dims), elem


def read_weights(path):
    """name -> (safetensors dtype, bytes) without loading the file into memory (np.memmap)."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    (n,) = struct.unpack("<Q", raw[:8].tobytes())
    header = json.loads(raw[8:8 + n].tobytes())
    header.pop("__metadata__", None)
    return {name: (e["dtype"], raw[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]]) for name, e in header.items()}


def weight_array(arg, stored):
    shape, elem = tensor_type(arg["type"])
    dtype, data = stored[arg["tensor"]]
    if arg.get("packing") == "int4-low-nibble-first":  # two 4-bit values per byte, low nibble first
        nibbles = np.stack([data & 15, data >> 4], axis=-1).reshape(-1)[:int(np.prod(shape))].astype(np.int8)
        if elem == "i4":
            nibbles = np.where(nibbles >= 8, nibbles - 16, nibbles).astype(np.int8)
        return nibbles.astype(ELEMENTS[elem]).reshape(shape)
    return np.frombuffer(data, dtype=STORED[dtype]).reshape(shape)


def read_inputs(items):
    arrays = {}
    for item in items:
        if "=" in item:
            name, file = item.split("=", 1)
            arrays[name] = np.load(file)
        elif item.endswith(".npz"):
            arrays.update(dict(np.load(item)))
        else:
            sys.exit(f"--inputs: give FILE.npz or NAME=FILE.npy, not {item!r}")
    return arrays


def file_name(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".npy"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("artifact")
    p.add_argument("--inputs", nargs="*", default=[])
    p.add_argument("--out", default="outputs")
    p.add_argument("--platform", default=None, help="cpu, cuda, tpu (default: JAX's default backend)")
    p.add_argument("--expect", default=None, help="a folder of NAME.npy to compare the outputs with")
    a = p.parse_args()
    art = pathlib.Path(a.artifact)
    manifest = json.loads((art / "manifest.json").read_text())
    feeds = read_inputs(a.inputs)
    stored = read_weights(art / manifest["weights"]) if any(x["kind"] == "weight" for x in manifest["arguments"]) else {}

    args = []
    for arg in manifest["arguments"]:
        if arg["kind"] == "weight":
            args.append(weight_array(arg, stored))
            continue
        shape, elem = tensor_type(arg["type"])
        if arg["name"] not in feeds:
            sys.exit(f"input {arg['name']!r} ({arg['type']}) was not given")
        x = np.asarray(feeds[arg["name"]])
        if tuple(x.shape) != shape:
            sys.exit(f"input {arg['name']!r} has shape {x.shape}, the module takes {shape} (recompile with --shape)")
        args.append(x.astype(ELEMENTS[elem], copy=False))

    backend = jax.extend.backend.get_backend(a.platform)
    device = backend.local_devices()[0]
    with jax_mlir.make_ir_context():
        module = ir.Module.parse((art / manifest["module"]).read_text())
        exe = backend.compile_and_load(module, xla_client.DeviceList((device,)), xla_client.CompileOptions())
    outputs = exe.execute([jax.device_put(x, device) for x in args])

    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"ran {art} on {device.platform} ({device.device_kind})")
    for spec, value in zip(manifest["outputs"], outputs):
        y = np.asarray(value)
        np.save(out / file_name(spec["name"]), y)
        line = f"  {spec['name']}: {y.dtype}{list(y.shape)} -> {out / file_name(spec['name'])}"
        if a.expect:
            ref = np.load(pathlib.Path(a.expect) / file_name(spec["name"])).astype(np.float64)
            err = np.linalg.norm(y.astype(np.float64) - ref) / max(np.linalg.norm(ref), 1e-30)
            line += f"  rel err {err:.3e}"
        print(line)


if __name__ == "__main__":
    main()
