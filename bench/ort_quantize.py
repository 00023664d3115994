#!/usr/bin/env python3
"""onnxruntime's own 4-bit weight quantizer (MatMulNBitsQuantizer, round to nearest), timed end to
end as a user runs it: load the model (with its external data), quantize, save. The baseline of
`npm run bench -- --only quant-speed`. Prints one JSON line: ms, peakRssMiB, onnxruntime version.

    python3 bench/ort_quantize.py MODEL OUT [--block 32] [--symmetric]
"""
import argparse
import json
import os
import resource
import time

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("out")
ap.add_argument("--block", type=int, default=32)
ap.add_argument("--symmetric", action="store_true")
args = ap.parse_args()

t0 = time.perf_counter()
import onnx  # noqa: E402  (imports are part of what a user waits for, but timed separately)
import onnxruntime  # noqa: E402
from onnxruntime.quantization import matmul_nbits_quantizer as mnq  # noqa: E402
t_import = time.perf_counter()
model = onnx.load(args.model)
t_load = time.perf_counter()
cfg = mnq.DefaultWeightOnlyQuantConfig(block_size=args.block, is_symmetric=args.symmetric)
q = mnq.MatMulNBitsQuantizer(model, block_size=args.block, is_symmetric=args.symmetric, algo_config=cfg)
q.process()
t_quant = time.perf_counter()
big = q.model.model.ByteSize() > (2 << 30) - (64 << 20)
if os.path.exists(args.out + ".data"):
    os.remove(args.out + ".data")
q.model.save_model_to_file(args.out, big)
# peftc's default save is durable (fsync of the written files and their folder); do the same
# here so both sides pay for the same durable write.
for path in (args.out, args.out + ".data"):
    if os.path.exists(path):
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
dfd = os.open(os.path.dirname(os.path.abspath(args.out)), os.O_RDONLY)
os.fsync(dfd)
os.close(dfd)
t_save = time.perf_counter()
nodes = sum(1 for n in q.model.model.graph.node if n.op_type == "MatMulNBits")
print(json.dumps({
    "ms": (t_save - t_import) * 1000, "importMs": (t_import - t0) * 1000, "loadMs": (t_load - t_import) * 1000,
    "quantizeMs": (t_quant - t_load) * 1000, "saveMs": (t_save - t_quant) * 1000,
    "peakRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "matMulNBits": nodes,
    "onnxruntime": onnxruntime.__version__, "cpus": os.cpu_count(),
}))
