#!/usr/bin/env python3
"""Runs peftc's `--target xla` artifacts on real XLA (JAX's PJRT clients) against the golden
records, and (with --torch) times them next to PyTorch eager and torch.compile on the same inputs.

    python3 bench/gpu/xla_bench.py --artifacts DIR --golden golden --out results.json \
        [--platforms cuda,cpu] [--torch] [--budget-s 230]

DIR is what `peftc golden check --keep DIR` leaves: DIR/<model>/<variant>/{model.mlir,
weights.safetensors, manifest.json} for the xla-* variants, <model> a folder of golden/.

Part 1, for every artifact x platform: the golden inputs (golden/<model>/reference.json `inputs`,
cast to the manifest's element types) go through the compiled module; the outputs are compared
with the golden outputs (relative L2 error over all outputs concatenated in float64, max abs,
cosine) and checked against golden/<model>/<variant>.json's tolerance (relErr: err <= bound,
cosine: cos >= bound; the other keys are not computed here and are listed as unchecked). Compile
time and latency (execute + block_until_ready, inputs already on the device; median and p90).

Part 2 (--torch), on cuda: the golden models that have a PyTorch definition (TORCH_MODELS below:
models/export_zoo.py's constructors with its seed, so the zoo weights are the ones the ONNX files
were exported from; models/lm's LlamaForCausalLM config from models/train_lm.py, with the ONNX
file's weights when every parameter can be matched by name and shape, random weights otherwise,
said in the JSON) timed as PyTorch eager fp32, torch.compile (default mode) and the xla-none /
xla-bf16 artifacts on cuda, all on the golden inputs, in interleaved rounds.

Everything is per item in try/except (error text in the JSON, traceback on stderr); the JSON is
rewritten after every item, so a run cut short still leaves what it measured. A time budget
(--budget-s) shrinks the timed runs and skips what no longer fits (recorded as skipped).
"""
import argparse
import json
import math
import os
import pathlib
import platform as pyplatform
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "targets" / "xla"))
sys.path.insert(0, str(ROOT / "models"))

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from budget import STATE, elapsed, err_text, left, log  # noqa: E402


# ---------------------------------------------------------------------------------------------
# jax / xla plumbing

RX = None  # run_xla module
JAX_INFO = {}


def import_jax():
    global RX
    import jax  # noqa: F401
    import run_xla as rx  # sets jax_enable_x64
    RX = rx
    import jax
    JAX_INFO["jax"] = jax.__version__
    try:
        import jaxlib
        JAX_INFO["jaxlib"] = jaxlib.__version__
    except Exception as e:  # noqa: BLE001
        JAX_INFO["jaxlib"] = repr(e)
    JAX_INFO["x64"] = bool(jax.config.jax_enable_x64)


def get_backend(name):
    import jax
    try:
        import jax.extend.backend
        return jax.extend.backend.get_backend(name)
    except Exception:  # noqa: BLE001
        from jax._src import xla_bridge
        return xla_bridge.get_backend(name)


def _device_list(device):
    errs = []
    for mod in ("jax._src.lib.xla_client", "jaxlib.xla_client", "jax._src.lib._jax", "jaxlib._jax"):
        try:
            m = __import__(mod, fromlist=["DeviceList"])
            return m.DeviceList((device,))
        except Exception as e:  # noqa: BLE001
            errs.append(f"{mod}: {e!r}")
    raise RuntimeError("no DeviceList: " + "; ".join(errs))


def _compile_options():
    try:
        from jax._src.lib import xla_client
        return xla_client.CompileOptions()
    except Exception:  # noqa: BLE001
        from jaxlib import xla_client
        return xla_client.CompileOptions()


def compile_module(backend, device, text):
    """Compiles StableHLO text on backend for device. Returns (executable, route, errors of the
    routes tried before). The first route is run_xla.py's."""
    errors = []

    def r_run_xla():
        from jax._src.interpreters import mlir as jax_mlir
        from jax._src.lib.mlir import ir
        with jax_mlir.make_ir_context():
            module = ir.Module.parse(text)
            return backend.compile_and_load(module, _device_list(device), _compile_options())

    def r_kw():
        from jax._src.interpreters import mlir as jax_mlir
        from jax._src.lib.mlir import ir
        with jax_mlir.make_ir_context():
            module = ir.Module.parse(text)
            return backend.compile_and_load(module, executable_devices=_device_list(device), compile_options=_compile_options())

    def r_jax_compiler():
        from jax._src import compiler
        from jax._src.interpreters import mlir as jax_mlir
        from jax._src.lib.mlir import ir
        with jax_mlir.make_ir_context():
            module = ir.Module.parse(text)
            return compiler.backend_compile_and_load(backend, module, _device_list(device), _compile_options(), [])

    def r_bytecode():
        from jax._src.interpreters import mlir as jax_mlir
        from jax._src.lib.mlir import ir
        with jax_mlir.make_ir_context():
            module = ir.Module.parse(text)
            code = jax_mlir.module_to_bytecode(module)
        return backend.compile_and_load(code, _device_list(device), _compile_options())

    def r_str():
        return backend.compile_and_load(text, _device_list(device), _compile_options())

    def r_str_seq():
        return backend.compile_and_load(text, [device], _compile_options())

    def r_bytes_seq():
        return backend.compile_and_load(text.encode(), [device], _compile_options())

    def r_old_compile():  # jax < 0.5: backend.compile returned a loaded executable
        return backend.compile(text, _compile_options())

    for name, fn in (("run_xla: ir.Module.parse + compile_and_load(module, DeviceList, CompileOptions)", r_run_xla),
                     ("compile_and_load keywords", r_kw),
                     ("jax._src.compiler.backend_compile_and_load", r_jax_compiler),
                     ("compile_and_load(bytecode)", r_bytecode),
                     ("compile_and_load(str, DeviceList)", r_str),
                     ("compile_and_load(str, [device])", r_str_seq),
                     ("compile_and_load(bytes, [device])", r_bytes_seq),
                     ("backend.compile(str)", r_old_compile)):
        try:
            exe = fn()
            return exe, name, errors
        except Exception as e:  # noqa: BLE001
            errors.append(f"{name}: {type(e).__name__}: {str(e)[:1500]}")
            # a parse/verification error of the module itself will fail every route the same way,
            # but trying the rest costs little and says so
    raise RuntimeError("every compile route failed:\n" + "\n".join(errors))


def device_put(x, device):
    import jax
    return jax.device_put(x, device)


def execute(exe, args):
    """args: device arrays. Returns the outputs (device arrays)."""
    if hasattr(exe, "execute"):
        try:
            return list(exe.execute(args))
        except TypeError:
            pass
    res = exe.execute_sharded(args)
    return [x[0] for x in res.disassemble_into_single_device_arrays()]


def block(outs):
    for o in outs:
        if hasattr(o, "block_until_ready"):
            o.block_until_ready()
    return outs


# ---------------------------------------------------------------------------------------------
# metrics


def compare(got, ref):
    """got, ref: lists of arrays (same order). Relative L2 over all outputs concatenated (float64),
    max abs, cosine."""
    g = np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in got])
    r = np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in ref])
    if g.shape != r.shape:
        raise ValueError(f"output sizes differ: {g.shape} vs {r.shape}")
    diff = g - r
    nr, ng = np.linalg.norm(r), np.linalg.norm(g)
    return {"relErr": float(np.linalg.norm(diff) / max(nr, 1e-30)),
            "maxAbs": float(np.max(np.abs(diff))) if diff.size else 0.0,
            "cosine": float(np.dot(g, r) / max(ng * nr, 1e-30)),
            "finite": bool(np.all(np.isfinite(g)))}


def check_tolerance(m, tol):
    res, unchecked = {}, []
    for k, bound in (tol or {}).items():
        if k == "relErr":
            res[k] = m["relErr"] <= bound
        elif k == "cosine":
            res[k] = m["cosine"] >= bound
        else:
            unchecked.append(k)
    ok = all(res.values()) and m.get("finite", True) if res else None
    return ok, res, unchecked


def stats_ms(times_s):
    a = np.asarray(times_s) * 1000.0
    return {"medianMs": float(np.median(a)), "p90Ms": float(np.percentile(a, 90)), "minMs": float(a.min()), "runs": int(a.size)}


def time_fn(fn, warmup, runs, max_s):
    """Calls fn warmup times, then up to runs times (stopping after max_s seconds, at least 3 runs)."""
    for _ in range(warmup):
        fn()
    ts = []
    start = time.perf_counter()
    for i in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
        if i >= 2 and time.perf_counter() - start > max_s:
            break
    return ts


# ---------------------------------------------------------------------------------------------
# golden data


def load_golden(golden, model):
    d = pathlib.Path(golden) / model
    ref = json.loads((d / "reference.json").read_text())
    # golden stores each array with a leading axis of runs (peftc's src/golden/store.ts stack());
    # the first run is what is fed and compared here
    inputs = {n: np.load(d / p)[0] for n, p in ref["inputs"].items()}
    outputs = {n: np.load(d / p)[0] for n, p in ref["outputs"].items()}
    return ref, inputs, outputs


def load_record(golden, model, variant):
    p = pathlib.Path(golden) / model / f"{variant}.json"
    if not p.exists():
        return None
    return json.loads(p.read_text())


class Artifact:
    """A compiled artifact on one device, with its arguments already on the device."""

    def __init__(self, art_dir, platform, golden_inputs):
        self.dir = pathlib.Path(art_dir)
        self.manifest = json.loads((self.dir / "manifest.json").read_text())
        self.backend = get_backend(platform)
        self.device = self.backend.local_devices()[0]
        text = (self.dir / self.manifest.get("module", "model.mlir")).read_text()
        t = time.perf_counter()
        self.exe, self.route, self.route_errors = compile_module(self.backend, self.device, text)
        self.compile_s = time.perf_counter() - t
        stored = {}
        if any(x["kind"] == "weight" for x in self.manifest["arguments"]):
            stored = RX.read_weights(self.dir / self.manifest.get("weights", "weights.safetensors"))
        host = []
        for arg in self.manifest["arguments"]:
            if arg["kind"] == "weight":
                host.append(RX.weight_array(arg, stored))
                continue
            shape, elem = RX.tensor_type(arg["type"])
            if arg["name"] not in golden_inputs:
                raise KeyError(f"input {arg['name']!r} ({arg['type']}) not in the golden inputs {sorted(golden_inputs)}")
            x = np.asarray(golden_inputs[arg["name"]])
            if tuple(x.shape) != tuple(shape):
                raise ValueError(f"input {arg['name']!r}: golden shape {x.shape}, module takes {shape}")
            host.append(x.astype(RX.ELEMENTS[elem], copy=False))
        t = time.perf_counter()
        self.args = [device_put(x, self.device) for x in host]
        block(self.args)
        self.put_s = time.perf_counter() - t

    def run(self):
        return block(execute(self.exe, self.args))

    def outputs_numpy(self):
        return [np.asarray(y) for y in self.run()]


# ---------------------------------------------------------------------------------------------
# torch models (part 2)

# golden model -> (export_zoo constructor name or 'lm', export_zoo family, torch input order from the golden inputs)
TORCH_MODELS = {
    "lm": ("lm", "causal-lm", ["input_ids"]),
    "zoo-bert-static": ("tiny_bert", "encoder", ["input_ids", "attention_mask"]),
    "zoo-gpt2-static": ("tiny_gpt2", "causal-lm", ["input_ids"]),
    "zoo-llama-static": ("tiny_llama", "causal-lm", ["input_ids"]),
    "zoo-vit-static": ("tiny_vit", "vision", ["pixel_values"]),
    "zoo-cnn-static": ("SmallCNN", "plain", ["image"]),
    "zoo-cnn-bn": ("SmallCNN", "plain", ["image"]),
    "zoo-bert-dynamic": ("tiny_bert", "encoder", ["input_ids", "attention_mask"]),
    "zoo-llama-dynamic": ("tiny_llama", "causal-lm", ["input_ids"]),
    "zoo-llama-nofold": ("tiny_llama", "causal-lm", ["input_ids"]),
    "zoo-llama-dynamo": ("tiny_llama", "causal-lm", ["input_ids"]),
    "zoo-llama-mask-dynamic": ("tiny_llama", "causal-lm-mask", ["input_ids", "attention_mask"]),
    # peft-*: merged LoRA/DoRA models of export_peft.py; no torch definition here (skipped, recorded)
}
# priority order (the budget may cut the tail)
ORDER = ["lm", "zoo-bert-static", "zoo-gpt2-static", "zoo-llama-static", "zoo-vit-static", "zoo-cnn-static", "zoo-cnn-bn",
         "zoo-bert-dynamic", "zoo-llama-dynamic", "zoo-llama-mask-dynamic", "zoo-llama-nofold", "zoo-llama-dynamo"]


def lm_model(info):
    """models/lm: train_lm.py's config; the ONNX file's weights when every parameter matches."""
    from transformers import LlamaConfig, LlamaForCausalLM
    import torch
    cfg = LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                      tie_word_embeddings=False, attn_implementation="eager", use_cache=False)
    torch.manual_seed(1234)
    model = LlamaForCausalLM(cfg)
    info["weights"] = "random (train_lm.py config, seed 1234): timing only"
    try:
        import onnx
        from onnx import numpy_helper
        m = onnx.load(str(ROOT / "models" / "lm" / "model.onnx"))
        inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
        sd = model.state_dict()
        matched = {}
        for k, v in sd.items():
            a = inits.get(k)
            if a is not None and tuple(a.shape) == tuple(v.shape):
                matched[k] = torch.from_numpy(np.array(a))
            elif a is None:
                # TorchScript export stores Linear weights transposed under onnx::MatMul_* names: not matchable by name
                pass
        info["onnx_weights_matched"] = f"{len(matched)}/{len(sd)}"
        missing = [k for k in sd if k not in matched and not k.endswith("rotary_emb.inv_freq")]
        if not missing:
            model.load_state_dict({**sd, **matched})
            info["weights"] = "models/lm/model.onnx initializers (all parameters matched by name)"
    except Exception as e:  # noqa: BLE001
        info["onnx_weights_error"] = err_text(e)
    return model


def build_torch(kind):
    import torch
    import export_zoo as ez
    info = {}
    if kind == "lm":
        model = lm_model(info)
    else:
        torch.manual_seed(ez.SEED)
        model = getattr(ez, kind)().eval()
        ez.randomize_bn(model)
        info["weights"] = f"export_zoo.{kind}() with seed {ez.SEED} + randomize_bn: the weights the zoo ONNX was exported from"
    return model.eval(), info


def torch_part(args, golden, results, save, artifacts_cache):
    import torch
    import export_zoo as ez
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tp = results.setdefault("torch", {"settings": {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__, "allow_tf32": False, "dtype": "float32", "no_grad": True,
        "xla_timing": "execute + block_until_ready, inputs on the device",
        "torch_timing": "forward + torch.cuda.synchronize, inputs on the device"}, "models": {}})
    try:
        import transformers
        tp["settings"]["transformers"] = transformers.__version__
    except Exception as e:  # noqa: BLE001
        tp["settings"]["transformers"] = repr(e)
    dev = torch.device("cuda")
    models = [m for m in ORDER if (pathlib.Path(args.golden) / m).is_dir()]
    others = sorted(p.name for p in pathlib.Path(args.golden).iterdir() if p.is_dir() and p.name not in TORCH_MODELS)
    for m in others:
        tp["models"][m] = {"skipped": "no PyTorch definition mapped in TORCH_MODELS (peft fixtures: merged adapters)"}
    save()
    rounds = 3
    for name in models:
        rec = tp["models"].setdefault(name, {})
        if left() < 15:
            rec["skipped"] = f"time budget ({STATE['budget']:.0f} s) spent"
            save()
            continue
        log(f"torch: {name}")
        try:
            kind, family, order = TORCH_MODELS[name]
            ref, inputs, outputs = load_golden(args.golden, name)
            model, info = build_torch(kind)
            rec.update(info)
            model = model.to(dev)
            targs = [torch.from_numpy(np.ascontiguousarray(inputs[n])).to(dev) for n in order]
            rec["input_shapes"] = {n: list(inputs[n].shape) for n in order}

            def eager():
                with torch.no_grad():
                    y = ez.call(model, family, targs)
                torch.cuda.synchronize()
                return y

            contenders = {}
            try:
                y = eager()
                if "random" not in rec.get("weights", ""):
                    rec["eager_vs_golden"] = compare([y.float().cpu().numpy()], list(outputs.values()))
                contenders["torch eager fp32"] = eager
            except Exception as e:  # noqa: BLE001
                rec["eager_error"] = err_text(e)
            if left() > 45:
                try:
                    compiled = torch.compile(model)
                    t = time.perf_counter()

                    def comp():
                        with torch.no_grad():
                            y = ez.call(compiled, family, targs)
                        torch.cuda.synchronize()
                        return y
                    comp()
                    rec["torch_compile_s"] = time.perf_counter() - t
                    contenders["torch.compile"] = comp
                except Exception as e:  # noqa: BLE001
                    rec["torch_compile_error"] = err_text(e)
            else:
                rec["torch_compile_skipped"] = "time budget"
            for variant in ("xla-none", "xla-bf16"):
                key = (name, variant, "cuda")
                try:
                    art = artifacts_cache.get(key)
                    if art is None:
                        d = pathlib.Path(args.artifacts) / name / variant
                        if not d.is_dir():
                            rec[f"{variant}_error"] = f"no artifact at {d}"
                            continue
                        art = Artifact(d, "cuda", inputs)
                    contenders[f"{variant} (cuda)"] = art.run
                except Exception as e:  # noqa: BLE001
                    rec[f"{variant}_error"] = err_text(e)
            per = {k: [] for k in contenders}
            budget_each = max(0.2, min(2.0, left() / 40))
            for r in range(rounds):
                names = list(contenders)
                names = names[r % len(names):] + names[:r % len(names)] if names else names
                for k in names:
                    try:
                        ts = time_fn(contenders[k], 5, 50, budget_each)
                        per[k].append(float(np.median(ts)) * 1000)
                    except Exception as e:  # noqa: BLE001
                        rec[f"{k}_error"] = err_text(e)
            rec["medianMs"] = {k: float(np.median(v)) for k, v in per.items() if v}
            rec["roundMediansMs"] = per
            e = rec["medianMs"].get("torch eager fp32")
            if e:
                rec["ratio_vs_eager"] = {k: v / e for k, v in rec["medianMs"].items()}
            log(f"torch: {name}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in rec["medianMs"].items()))
            del model
            torch.cuda.empty_cache()
        except Exception as e:  # noqa: BLE001
            rec["error"] = err_text(e)
            log(f"torch: {name} FAILED: {rec['error'][:200]}")
        save()


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--golden", default=str(ROOT / "golden"))
    ap.add_argument("--out", default="xla-results.json")
    ap.add_argument("--platforms", default="cuda,cpu")
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--budget-s", type=float, default=230.0, help="whole-run time budget in seconds")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    STATE["budget"] = args.budget_s
    results = {"script": "bench/gpu/xla_bench.py", "argv": sys.argv[1:],
               "machine": {"processor": pyplatform.processor(), "machine": pyplatform.machine(), "cpus": os.cpu_count(),
                           "python": pyplatform.python_version(), "numpy": np.__version__},
               "jax": JAX_INFO, "routes": {}, "items": [], "errors": []}
    out = pathlib.Path(args.out)

    def save():
        results["elapsed_s"] = elapsed()
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(results, indent=1, default=str))
        os.replace(tmp, out)

    try:
        import_jax()
        import jax
        results["jax"]["devices"] = {}
        for p in args.platforms.split(","):
            try:
                devs = get_backend(p).local_devices()
                results["jax"]["devices"][p] = [f"{d.platform}:{d.device_kind}" for d in devs]
            except Exception as e:  # noqa: BLE001
                results["jax"]["devices"][p] = f"unavailable: {err_text(e)}"
        log(f"jax {jax.__version__}: {results['jax']['devices']}")
    except Exception as e:  # noqa: BLE001
        results["errors"].append(f"jax import: {err_text(e)}")
        save()
        print("jax could not be imported; nothing to run", flush=True)
        return 1
    save()

    art_root = pathlib.Path(args.artifacts)
    found = sorted((m.name, v.name) for m in art_root.iterdir() if m.is_dir() for v in m.iterdir()
                   if v.is_dir() and v.name.startswith("xla-"))
    prio = {m: i for i, m in enumerate(ORDER)}
    vprio = {"xla-none": 0, "xla-bf16": 1, "xla-int4": 2}
    found.sort(key=lambda mv: (prio.get(mv[0], 99), mv[0], vprio.get(mv[1], 9), mv[1]))
    platforms = [p for p in args.platforms.split(",") if p]
    log(f"{len(found)} artifacts x {platforms}")
    # the torch part needs time too: part 1 may use ~60% of the budget when --torch is given
    part1_end = STATE["budget"] * (0.6 if args.torch else 0.97)
    cache = {}
    n_items = len(found) * len(platforms)
    for platform in platforms:
        if isinstance(results["jax"]["devices"].get(platform), str):
            for m, v in found:
                results["items"].append({"model": m, "variant": v, "platform": platform, "error": results["jax"]["devices"][platform]})
            save()
            continue
        for model, variant in found:
            item = {"model": model, "variant": variant, "platform": platform}
            results["items"].append(item)
            if elapsed() > part1_end:
                item["skipped"] = "time budget"
                save()
                continue
            try:
                ref, inputs, outputs = load_golden(args.golden, model)
                record = load_record(args.golden, model, variant)
                item["tolerance"] = (record or {}).get("tolerance")
                item["recordedFidelity"] = (record or {}).get("fidelity")
                art = Artifact(art_root / model / variant, platform, inputs)
                item["compileS"] = art.compile_s
                item["route"] = art.route
                if art.route_errors:
                    item["routeErrors"] = art.route_errors
                results["routes"][art.route] = results["routes"].get(art.route, 0) + 1
                got = art.outputs_numpy()
                names = [o["name"] for o in art.manifest["outputs"]]
                missing = [n for n in outputs if n not in names]
                if missing:
                    raise KeyError(f"golden outputs {missing} not among the module's {names}")
                got_by = dict(zip(names, got))
                item["outputs"] = {n: {"dtype": str(got_by[n].dtype), "shape": list(got_by[n].shape)} for n in outputs}
                m = compare([got_by[n] for n in outputs], [outputs[n] for n in outputs])
                item.update(m)
                ok, per, unchecked = check_tolerance(m, item["tolerance"])
                item["toleranceOk"], item["toleranceChecks"], item["toleranceUnchecked"] = ok, per, unchecked
                # latency: fewer runs when time is short
                per_item = max(0.3, min(4.0, (part1_end - elapsed()) / max(1, n_items - len(results["items"]) + 1)))
                ts = time_fn(art.run, args.warmup, args.runs, per_item)
                item["latency"] = stats_ms(ts)
                if platform == "cuda" and variant in ("xla-none", "xla-bf16"):
                    cache[(model, variant, platform)] = art
                log(f"{model}/{variant}/{platform}: rel {m['relErr']:.3e} cos {m['cosine']:.7f} ok={ok} "
                    f"compile {art.compile_s:.2f}s median {item['latency']['medianMs']:.3f} ms")
            except Exception as e:  # noqa: BLE001
                item["error"] = err_text(e)
                log(f"{model}/{variant}/{platform}: FAILED {item['error'][:300]}")
            save()

    if args.torch:
        try:
            torch_part(args, args.golden, results, save, cache)
        except Exception as e:  # noqa: BLE001
            results["errors"].append(f"torch part: {err_text(e)}")
        save()

    # tables
    print("\n## XLA artifacts vs golden\n", flush=True)
    print("| model | variant | platform | rel err | cosine | max abs | tolerance | ok | compile s | median ms | p90 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for it in results["items"]:
        if "relErr" in it:
            tol = ", ".join(f"{k} {v}" for k, v in (it.get("tolerance") or {}).items())
            print(f"| {it['model']} | {it['variant']} | {it['platform']} | {it['relErr']:.3e} | {it['cosine']:.7f} | {it['maxAbs']:.3g} | "
                  f"{tol} | {it['toleranceOk']} | {it['compileS']:.2f} | "
                  f"{it.get('latency', {}).get('medianMs', float('nan')):.3f} | {it.get('latency', {}).get('p90Ms', float('nan')):.3f} |")
        else:
            print(f"| {it['model']} | {it['variant']} | {it['platform']} | {(it.get('error') or it.get('skipped') or '')[:120].splitlines()[0] if (it.get('error') or it.get('skipped')) else ''} | | | | | | | |")
    if "torch" in results:
        print("\n## cuda: PyTorch vs XLA artifacts (median of 3 interleaved round medians, ms; ratio vs eager)\n")
        print("| model | weights | eager fp32 | torch.compile | compile s | xla-none | xla-bf16 | xla-none/eager | xla-bf16/eager |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, r in results["torch"]["models"].items():
            if "medianMs" not in r:
                print(f"| {name} | {(r.get('skipped') or r.get('error') or '')[:100].splitlines()[0] if (r.get('skipped') or r.get('error')) else ''} | | | | | | | |")
                continue
            md, ra = r["medianMs"], r.get("ratio_vs_eager", {})

            def f(x, d=3):
                return "" if x is None else f"{x:.{d}f}"
            print(f"| {name} | {'random' if 'random' in r.get('weights', '') else 'real'} | {f(md.get('torch eager fp32'))} | "
                  f"{f(md.get('torch.compile'))} | {f(r.get('torch_compile_s'), 1)} | {f(md.get('xla-none (cuda)'))} | "
                  f"{f(md.get('xla-bf16 (cuda)'))} | {f(ra.get('xla-none (cuda)'), 2)} | {f(ra.get('xla-bf16 (cuda)'), 2)} |")
    print(f"\nroutes: {results['routes']}\nresults: {out} ({elapsed():.0f} s)", flush=True)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
