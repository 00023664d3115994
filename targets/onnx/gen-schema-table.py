#!/usr/bin/env python3
"""ONNX operator schemas (type constraints per op version) as data, in the kernel-table format of
targets/legality.ts, so peftc can check that a rewritten node is valid ONNX at the model's opset
(e.g. ConstantOfShape takes bfloat16 only from opset 20) without Python at compile time.

Run with an onnx package (Debian's python3-onnx 1.12 covers opsets up to 17):
    /usr/bin/python3 targets/onnx/gen-schema-table.py > targets/onnx/schemas.json
"""
import json
import sys

import onnx
from onnx import defs


def type_name(t):
    # 'tensor(float)' -> 'float'; keep seq(...)/map(...)/optional(...) spelled out
    if t.startswith("tensor(") and t.endswith(")"):
        return t[len("tensor("):-1]
    return t


def main():
    by_op = {}
    for s in defs.get_all_schemas_with_history():
        if s.domain not in ("", "ai.onnx"):
            continue
        by_op.setdefault(s.name, []).append(s)
    kernels = []
    for name in sorted(by_op):
        versions = sorted(by_op[name], key=lambda s: s.since_version)
        for i, s in enumerate(versions):
            until = versions[i + 1].since_version - 1 if i + 1 < len(versions) else None
            types = {c.type_param_str: sorted(type_name(t) for t in c.allowed_type_strs) for c in s.type_constraints}
            param = lambda p: [p.name, p.typeStr]
            kernels.append({
                "domain": "",
                "op": name,
                "since": s.since_version,
                "until": until,
                "types": types,
                "signatures": [{"inputs": [param(p) for p in s.inputs], "outputs": [param(p) for p in s.outputs]}],
                "deprecated": bool(s.deprecated),
            })
    out = {
        "source": {"onnx": onnx.__version__, "generator": "targets/onnx/gen-schema-table.py", "max_opset": defs.onnx_opset_version()},
        "provider": "ONNX schema",
        "kernels": kernels,
    }
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


main()
