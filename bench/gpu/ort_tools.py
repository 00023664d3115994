#!/usr/bin/env python3
"""onnxruntime's own Python tools side by side with peftc, on the same CPU, one run each.

    python3 bench/gpu/ort_tools.py --peftc DIR --out results.json --fp16-out DIR2 [--budget-s 230]

DIR holds models peftc compiled beforehand, with these exact file names (run from the repository root):

  (a) fused cpu models, one per zoo model:
      for n in bert-static bert-dynamic gpt2-static vit-static llama-static; do
        npx peftc compile models/zoo/$n/model.onnx --target cpu -o DIR/fused-$n.onnx
      done
  (b) static int8 (QDQ; peftc's defaults = bench/int8.ts's lm table: per-channel int8 weights,
      uint8 asymmetric activations), calibrated on the same files bench/int8.ts uses
      (models/lm/calib.npy: 32 windows x 256 bytes; models/digits/calib.npy: the first 256 training images):
      for m in minmax entropy percentile; do
        npx peftc compile models/lm/model.onnx --target cpu --quant int8 --calib models/lm/calib.npy --calib-method $m -o DIR/int8-$m-lm.onnx
        npx peftc compile models/digits/model.onnx --target cpu --quant int8 --calib models/digits/calib.npy --calib-method $m -o DIR/int8-$m-digits.onnx
      done

A missing file is recorded as such; the ORT side still runs.

Parts (each item in try/except: error text in the JSON, traceback on stderr; the JSON is
rewritten after every item):
 (a) fusion: onnxruntime.transformers.optimizer.optimize_model(model_type=..., num_heads=4,
     hidden_size=64, use_gpu=False) on models/zoo/{bert-static,bert-dynamic,gpt2-static,vit-static,
     llama-static}; the original, ORT-optimized and peftc-fused models timed in onnxruntime sessions
     (ORT_ENABLE_ALL, 1 intra-op thread), interleaved rounds, on test_data_set_0; fused-op
     histograms, outputs' max abs diff vs the original.
 (b) int8 static: onnxruntime.quantization.quantize_static (QDQ, QUInt8 activations, QInt8
     weights as onnxruntime recommends for x86 CPU, per_channel=True like peftc's default) with
     MinMax, Entropy, Percentile calibration on the same calibration files, after ORT's
     quant_pre_process (fallback: the raw model); perplexity of models/lm on all 128 256-byte
     windows of models/lm/eval.bin (batches of 16, as bench/int8.ts), digits accuracy on its 899
     test images (one run); latency at batch 8 (lm 8x256, digits 8x1x8x8), fp32 alongside.
 (c) float16: onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True) of every
     models/zoo/*/model.onnx and models/lm/model.onnx -> DIR2/ort-fp16-<name>.onnx (lm: ort-fp16-lm.onnx).
"""
import argparse
import collections
import glob
import json
import math
import os
import pathlib
import platform as pyplatform
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from budget import STATE, elapsed, err_text, left, log  # noqa: E402


def session(path, threads=1):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def histogram(path):
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    c = collections.Counter((n.domain + "::" if n.domain not in ("", "ai.onnx") else "") + n.op_type for n in m.graph.node)
    return dict(sorted(c.items(), key=lambda kv: -kv[1])), len(m.graph.node)


FUSED = {"com.microsoft::Attention", "com.microsoft::MultiHeadAttention", "com.microsoft::GroupQueryAttention",
         "com.microsoft::SkipLayerNormalization", "com.microsoft::EmbedLayerNormalization", "com.microsoft::BiasGelu",
         "com.microsoft::FastGelu", "com.microsoft::Gelu", "com.microsoft::SkipSimplifiedLayerNormalization",
         "com.microsoft::SimplifiedLayerNormalization", "LayerNormalization", "com.microsoft::LayerNormalization",
         "com.microsoft::RotaryEmbedding", "com.microsoft::BiasAdd", "com.microsoft::QuickGelu", "com.microsoft::FusedMatMul",
         "com.microsoft::FusedConv", "com.microsoft::MatMulNBits", "RMSNormalization"}


def fused_only(hist):
    return {k: v for k, v in hist.items() if k in FUSED or k.startswith("com.microsoft::")}


def time_interleaved(sessions, feeds, rounds=3, warmup=10, runs=50, max_s=1.5):
    """sessions: {label: InferenceSession}. Returns {label: {'medianMs', 'roundMediansMs'}}."""
    per = {k: [] for k in sessions}
    labels = list(sessions)
    for r in range(rounds):
        order = labels[r % len(labels):] + labels[:r % len(labels)]
        for k in order:
            s = sessions[k]
            f = feeds[k]
            for _ in range(warmup):
                s.run(None, f)
            ts = []
            start = time.perf_counter()
            for i in range(runs):
                t = time.perf_counter()
                s.run(None, f)
                ts.append(time.perf_counter() - t)
                if i >= 2 and time.perf_counter() - start > max_s:
                    break
            per[k].append(float(np.median(ts)) * 1000)
    return {k: {"medianMs": float(np.median(v)), "roundMediansMs": v} for k, v in per.items()}


def feeds_for(sess, arrays_by_name, arrays_in_order):
    """Matches data to the session's inputs: by name, else by order."""
    out = {}
    for i, inp in enumerate(sess.get_inputs()):
        if inp.name in arrays_by_name:
            out[inp.name] = arrays_by_name[inp.name]
        elif i < len(arrays_in_order):
            out[inp.name] = arrays_in_order[i]
        else:
            raise KeyError(f"no data for input {inp.name!r}")
    return out


def read_test_data(model_dir):
    from onnx import numpy_helper
    import onnx
    files = sorted(glob.glob(os.path.join(model_dir, "test_data_set_0", "input_*.pb")), key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0]))
    by_name, ordered = {}, []
    for p in files:
        t = onnx.TensorProto()
        with open(p, "rb") as f:
            t.ParseFromString(f.read())
        a = numpy_helper.to_array(t)
        ordered.append(a)
        if t.name:
            by_name[t.name] = a
    return by_name, ordered


# ---------------------------------------------------------------------------------------------
# (a) fusion

ZOO_FUSION = [("bert-static", "bert"), ("bert-dynamic", "bert"), ("gpt2-static", "gpt2"), ("vit-static", "vit"),
              ("llama-static", "gpt2")]  # llama: no 'llama' model_type in optimize_model's CPU path for this export; tried as gpt2, then bert


def part_fusion(args, res, save, work):
    from onnxruntime.transformers import optimizer
    part = res.setdefault("fusion", {})
    for name, mtype in ZOO_FUSION:
        rec = part.setdefault(name, {})
        if left() < 20:
            rec["skipped"] = "time budget"
            save()
            continue
        log(f"fusion: {name}")
        try:
            src = ROOT / "models" / "zoo" / name / "model.onnx"
            ort_path = work / f"ort-opt-{name}.onnx"
            types = [mtype] + (["bert"] if name.startswith("llama") else [])
            for mt in types:
                try:
                    t = time.perf_counter()
                    opt = optimizer.optimize_model(str(src), model_type=mt, num_heads=4, hidden_size=64, use_gpu=False)
                    rec["ort_optimize_s"] = time.perf_counter() - t
                    opt.save_model_to_file(str(ort_path))
                    rec["ort_model_type"] = mt
                    try:
                        rec["ort_fused_operator_statistics"] = opt.get_fused_operator_statistics()
                    except Exception as e:  # noqa: BLE001
                        rec["ort_fused_operator_statistics_error"] = repr(e)
                    break
                except Exception as e:  # noqa: BLE001
                    rec.setdefault("ort_optimize_errors", {})[mt] = err_text(e)
            paths = {"original": src}
            if ort_path.exists():
                paths["ort-optimized"] = ort_path
            peftc = pathlib.Path(args.peftc) / f"fused-{name}.onnx"
            if peftc.exists():
                paths["peftc"] = peftc
            else:
                rec["peftc_missing"] = str(peftc)
            by_name, ordered = read_test_data(str(src.parent))
            sessions, feeds, outs = {}, {}, {}
            for k, p in paths.items():
                try:
                    rec.setdefault("histogram", {})[k], rec.setdefault("nodes", {})[k] = histogram(p)
                    rec.setdefault("fused_ops", {})[k] = fused_only(rec["histogram"][k])
                    s = session(p)
                    f = feeds_for(s, by_name, ordered)
                    outs[k] = s.run(None, f)
                    sessions[k], feeds[k] = s, f
                except Exception as e:  # noqa: BLE001
                    rec.setdefault("session_errors", {})[k] = err_text(e)
            if "original" in outs:
                for k, o in outs.items():
                    if k != "original":
                        rec.setdefault("max_abs_diff_vs_original", {})[k] = float(max(
                            np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))) for a, b in zip(o, outs["original"])))
            rec["latency"] = time_interleaved(sessions, feeds, max_s=min(1.5, max(0.2, left() / 60)))
            lat = {k: v["medianMs"] for k, v in rec["latency"].items()}
            if "peftc" in lat and "ort-optimized" in lat:
                rec["ratio_peftc_over_ort"] = lat["peftc"] / lat["ort-optimized"]
            log(f"fusion: {name}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in lat.items()))
        except Exception as e:  # noqa: BLE001
            rec["error"] = err_text(e)
        save()


# ---------------------------------------------------------------------------------------------
# (b) int8 static


def perplexity_from_logits(logits, ids):
    """models/train_lm.py's own (imported on use: that module imports torch)."""
    sys.path.insert(0, str(ROOT / "models"))
    from train_lm import perplexity_from_logits as ppl
    return ppl(logits, ids)


def lm_eval_ids():
    data = (ROOT / "models" / "lm" / "eval.bin").read_bytes()
    seq = 256
    n = len(data) // seq
    return np.frombuffer(data[: n * seq], dtype=np.uint8).astype(np.int64).reshape(n, seq)


def lm_perplexity(path):
    ids = lm_eval_ids()
    s = session(path, threads=2)  # bench/int8.ts evaluates with 2 intra-op threads
    outs = [s.run(None, {"input_ids": ids[i:i + 16]})[0] for i in range(0, len(ids), 16)]
    return perplexity_from_logits(np.concatenate(outs), ids)


def digits_accuracy(path):
    x = np.load(ROOT / "models" / "digits" / "test_images.npy").astype(np.float32)
    y = np.load(ROOT / "models" / "digits" / "test_labels.npy")
    s = session(path, threads=2)
    logits = s.run(None, {s.get_inputs()[0].name: x})[0]
    return float(100.0 * np.mean(np.argmax(logits, -1) == y))


class Reader:
    """CalibrationDataReader over the rows of a .npy (calib file), fed `rows` at a time."""

    def __init__(self, name, arr, rows):
        self.name, self.arr, self.rows, self.i = name, arr, rows, 0

    def get_next(self):
        if self.i >= len(self.arr):
            return None
        x = self.arr[self.i:self.i + self.rows]
        self.i += self.rows
        return {self.name: x}

    def rewind(self):
        self.i = 0


INT8_MODELS = {
    # name: model, calib file, input name, calibration rows per run, latency feed
    "lm": ("models/lm/model.onnx", "models/lm/calib.npy", "input_ids", 1, lambda: {"input_ids": lm_eval_ids()[:8]}),
    "digits": ("models/digits/model.onnx", "models/digits/calib.npy", "image", 32,
               lambda: {"image": np.load(ROOT / "models" / "digits" / "test_images.npy")[:8].astype(np.float32)}),
}


def part_int8(args, res, save, work):
    import onnxruntime.quantization as q
    part = res.setdefault("int8", {"settings": {
        "quant_format": "QDQ", "activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": True,
        "preprocess": "onnxruntime.quantization.shape_inference.quant_pre_process (fallback: raw model)",
        "lm_eval": "perplexity, all 256-byte windows of models/lm/eval.bin, batches of 16, 2 threads",
        "digits_eval": "accuracy on models/digits/test_images.npy (899), 2 threads",
        "latency": "ORT_ENABLE_ALL, 1 intra-op thread, batch 8, 3 interleaved rounds"}, "models": {}})
    for mname, (mpath, cpath, iname, rows, feedf) in INT8_MODELS.items():
        rec = part["models"].setdefault(mname, {"variants": {}})
        log(f"int8: {mname}")
        src = ROOT / mpath
        calib = np.load(ROOT / cpath)
        if calib.dtype == np.float64:
            calib = calib.astype(np.float32)
        rec["calib"] = {"file": cpath, "shape": list(calib.shape), "rows_per_run": rows}
        evaluate = lm_perplexity if mname == "lm" else digits_accuracy
        metric = "perplexity" if mname == "lm" else "accuracy%"
        rec["metric"] = metric
        pre = work / f"{mname}-pre.onnx"
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
            rec["preprocessed"] = True
        except Exception as e:  # noqa: BLE001
            rec["preprocess_error"] = err_text(e)
            pre = src
        files = {"fp32": src}
        for method in ("MinMax", "Entropy", "Percentile"):
            v = rec["variants"].setdefault(f"ort-{method.lower()}", {})
            if left() < 30:
                v["skipped"] = "time budget"
                save()
                continue
            try:
                dst = work / f"ort-int8-{method.lower()}-{mname}.onnx"
                t = time.perf_counter()
                extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
                q.quantize_static(str(pre), str(dst), Reader(iname, calib, rows), quant_format=q.QuantFormat.QDQ,
                                  per_channel=True, activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                                  calibrate_method=getattr(q.CalibrationMethod, method), extra_options=extra)
                v["quantize_s"] = time.perf_counter() - t
                files[f"ort-{method.lower()}"] = dst
                log(f"int8: {mname} ort {method}: {v['quantize_s']:.1f} s")
            except Exception as e:  # noqa: BLE001
                v["error"] = err_text(e)
            save()
        for calib_name in ("minmax", "entropy", "percentile"):
            p = pathlib.Path(args.peftc) / f"int8-{calib_name}-{mname}.onnx"
            if p.exists():
                files[f"peftc-{calib_name}"] = p
            else:
                rec["variants"].setdefault(f"peftc-{calib_name}", {})["missing"] = str(p)
        sessions, feeds = {}, {}
        for k, p in files.items():
            v = rec["variants"].setdefault(k, {})
            try:
                v["file"] = str(p)
                v["bytes"] = os.path.getsize(p)
                h, n = histogram(p)
                v["nodes"] = n
                v["qdq"] = {"QuantizeLinear": h.get("QuantizeLinear", 0), "DequantizeLinear": h.get("DequantizeLinear", 0)}
                if left() > 15:
                    t = time.perf_counter()
                    v[metric] = evaluate(p)
                    v["eval_s"] = time.perf_counter() - t
                s = session(p)
                f = feedf()
                s.run(None, f)
                sessions[k], feeds[k] = s, f
                log(f"int8: {mname} {k}: {metric} {v.get(metric)}")
            except Exception as e:  # noqa: BLE001
                v["error"] = err_text(e)
            save()
        try:
            lat = time_interleaved(sessions, feeds, warmup=3 if mname == "lm" else 10, runs=10 if mname == "lm" else 50,
                                   max_s=min(2.0, max(0.3, left() / 40)))
            for k, l in lat.items():
                rec["variants"][k]["latency"] = l
            base = lat.get("fp32", {}).get("medianMs")
            for k, l in lat.items():
                if base:
                    rec["variants"][k]["speedup_vs_fp32"] = base / l["medianMs"]
            for k in list(rec["variants"]):
                if k.startswith("peftc-"):
                    o = "ort-" + k.split("-", 1)[1]
                    if "latency" in rec["variants"][k] and "latency" in rec["variants"].get(o, {}):
                        rec["variants"][k]["ratio_peftc_over_ort"] = rec["variants"][k]["latency"]["medianMs"] / rec["variants"][o]["latency"]["medianMs"]
        except Exception as e:  # noqa: BLE001
            rec["latency_error"] = err_text(e)
        save()


# ---------------------------------------------------------------------------------------------
# (c) float16


def part_fp16(args, res, save):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    part = res.setdefault("fp16", {})
    out = pathlib.Path(args.fp16_out)
    out.mkdir(parents=True, exist_ok=True)
    srcs = [(p.parent.name, p) for p in sorted((ROOT / "models" / "zoo").glob("*/model.onnx"))]
    srcs.append(("lm", ROOT / "models" / "lm" / "model.onnx"))
    for name, src in srcs:
        rec = part.setdefault(name, {})
        try:
            m = onnx.load(str(src))
            rec["nodes_before"] = len(m.graph.node)
            t = time.perf_counter()
            m16 = convert_float_to_float16(m, keep_io_types=True)
            rec["convert_s"] = time.perf_counter() - t
            rec["nodes_after"] = len(m16.graph.node)
            rec["casts_after"] = sum(1 for n in m16.graph.node if n.op_type == "Cast")
            dst = out / f"ort-fp16-{name}.onnx"
            onnx.save(m16, str(dst))
            rec["file"] = str(dst)
            rec["bytes"] = os.path.getsize(dst)
            try:
                onnx.checker.check_model(str(dst))
                rec["checker"] = "ok"
            except Exception as e:  # noqa: BLE001
                rec["checker"] = f"{type(e).__name__}: {e}"[:1000]
            try:  # does it load on the CPU provider? (not timed: the CUDA run is elsewhere)
                session(dst)
                rec["cpu_session"] = "ok"
            except Exception as e:  # noqa: BLE001
                rec["cpu_session"] = f"{type(e).__name__}: {e}"[:1000]
            log(f"fp16: {name}: {rec['nodes_before']} -> {rec['nodes_after']} nodes ({rec['casts_after']} Cast)")
        except Exception as e:  # noqa: BLE001
            rec["error"] = err_text(e)
        save()


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peftc", required=True, help="folder of peftc-compiled models (names in the docstring)")
    ap.add_argument("--out", default="ort-tools-results.json")
    ap.add_argument("--fp16-out", required=True)
    ap.add_argument("--parts", default="fusion,int8,fp16")
    ap.add_argument("--budget-s", type=float, default=230.0)
    args = ap.parse_args()
    STATE["budget"] = args.budget_s
    res = {"script": "bench/gpu/ort_tools.py", "argv": sys.argv[1:],
           "machine": {"processor": pyplatform.processor(), "machine": pyplatform.machine(), "cpus": os.cpu_count(),
                       "python": pyplatform.python_version(), "numpy": np.__version__}, "errors": []}
    try:
        with open("/proc/cpuinfo") as f:
            res["machine"]["cpu_model"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except Exception:  # noqa: BLE001
        pass
    try:
        import onnx
        import onnxruntime
        res["versions"] = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    except Exception as e:  # noqa: BLE001
        res["errors"].append(err_text(e))
    out = pathlib.Path(args.out)

    def save():
        res["elapsed_s"] = elapsed()
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(res, indent=1, default=str))
        os.replace(tmp, out)

    save()
    work = pathlib.Path(tempfile.mkdtemp(prefix="ort-tools-"))
    res["work_dir"] = str(work)
    parts = args.parts.split(",")
    # fp16 first: it is quick and its files are needed by the CUDA tool later
    if "fp16" in parts:
        try:
            part_fp16(args, res, save)
        except Exception as e:  # noqa: BLE001
            res["errors"].append(f"fp16: {err_text(e)}")
    if "fusion" in parts:
        try:
            part_fusion(args, res, save, work)
        except Exception as e:  # noqa: BLE001
            res["errors"].append(f"fusion: {err_text(e)}")
    if "int8" in parts:
        try:
            part_int8(args, res, save, work)
        except Exception as e:  # noqa: BLE001
            res["errors"].append(f"int8: {err_text(e)}")
    save()

    print("\n## (a) fusion: onnxruntime CPU, ENABLE_ALL, 1 thread, median of 3 interleaved rounds (ms)\n")
    print("| model | ORT model_type | original | ORT-optimized | peftc | peftc/ORT | ORT fused ops | peftc fused ops | max|diff| ORT | max|diff| peftc |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in res.get("fusion", {}).items():
        lat = {k: v["medianMs"] for k, v in r.get("latency", {}).items()}
        fo = r.get("fused_ops", {})
        d = r.get("max_abs_diff_vs_original", {})

        def f(x, p=3):
            return "" if x is None else (f"{x:.{p}f}" if isinstance(x, float) else str(x))
        print(f"| {name} | {r.get('ort_model_type', 'failed')} | {f(lat.get('original'))} | {f(lat.get('ort-optimized'))} | {f(lat.get('peftc'))} | "
              f"{f(r.get('ratio_peftc_over_ort'), 2)} | {fo.get('ort-optimized', '')} | {fo.get('peftc', '')} | {f(d.get('ort-optimized'), 6)} | {f(d.get('peftc'), 6)} |"
              + (f" error: {r['error'][:80]}" if "error" in r else ""))
    print("\n## (b) static int8 (QDQ, per-channel, u8 activations / s8 weights): fidelity and batch-8 latency (1 thread)\n")
    print("| model | variant | metric | value | median ms | x fp32 | peftc/ORT | quantize s | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mname, r in res.get("int8", {}).get("models", {}).items():
        for k, v in r.get("variants", {}).items():
            val = v.get(r.get("metric"))
            note = (v.get("error") or v.get("missing") or v.get("skipped") or "")[:80].replace("\n", " ")
            print(f"| {mname} | {k} | {r.get('metric')} | {'' if val is None else f'{val:.4f}'} | "
                  f"{'' if 'latency' not in v else format(v['latency']['medianMs'], '.3f')} | "
                  f"{'' if 'speedup_vs_fp32' not in v else format(v['speedup_vs_fp32'], '.2f')} | "
                  f"{'' if 'ratio_peftc_over_ort' not in v else format(v['ratio_peftc_over_ort'], '.2f')} | "
                  f"{'' if 'quantize_s' not in v else format(v['quantize_s'], '.1f')} | {note} |")
    print("\n## (c) float16 conversion (keep_io_types=True)\n")
    print("| model | nodes before | nodes after | Cast | checker | CPU session | note |")
    print("|---|---|---|---|---|---|---|")
    for name, r in res.get("fp16", {}).items():
        print(f"| {name} | {r.get('nodes_before', '')} | {r.get('nodes_after', '')} | {r.get('casts_after', '')} | "
              f"{str(r.get('checker', ''))[:40]} | {str(r.get('cpu_session', ''))[:40]} | {(r.get('error') or '')[:80]} |")
    print(f"\nresults: {out} ({elapsed():.0f} s)", flush=True)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
