#!/usr/bin/env python3
"""Model zoo fixtures: small torch-exported BERT-, GPT-2-, Llama- and ViT-style models and a CNN.

Each model is built from a small random config with a fixed seed (no downloads, no hub access),
exported to ONNX, and stored as <out>/<name>/model.onnx with test_data_set_N/{input,output}_K.pb
(ONNX TensorProto files named after the graph inputs/outputs) whose outputs onnxruntime (CPU)
computed on the exported model. <out>/manifest.json records, per model, the exporter actually
used, the opset actually in the file, inputs/outputs (declared and test shapes, dtypes), the node
count, the torch-vs-onnxruntime max abs difference, and the torch/transformers/onnx versions;
exporter failures and workarounds are recorded there too, never silently papered over.

    python3 models/export_zoo.py --out models/zoo        (where torch + transformers are)

The TorchScript-based exporter (torch.onnx.export(..., dynamo=False), opset 17) is the one asked
for. With transformers 5 the causal LMs (Llama, GPT-2) may not trace through transformers' own
mask construction; then the export is retried with the same model called with an explicit 4-D
additive causal mask built in plain torch (the weights and every other op are unchanged), and the
manifest says "workaround". Only if that also fails does the script fall back to the dynamo
exporter, and the manifest says so.
"""
import argparse
import contextlib
import json
import os
import sys
import traceback

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

SEED = 1234
OPSET = 17
VOCAB = 256
BATCH, SEQ = 2, 16
# a second data set for the models with dynamic axes, at another batch/sequence length
DYN_BATCH, DYN_SEQ = 3, 9


# ---------------------------------------------------------------------------------------------
# models


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, use_cache=False, attn_implementation="eager")
    return LlamaForCausalLM(cfg)


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64, use_cache=False,
                     attn_implementation="eager")
    return GPT2LMHeadModel(cfg)


def tiny_bert():
    from transformers import BertConfig, BertModel
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     max_position_embeddings=64, attn_implementation="eager")
    return BertModel(cfg, add_pooling_layer=False)


def tiny_vit():
    from transformers import ViTConfig, ViTModel
    cfg = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, attn_implementation="eager")
    return ViTModel(cfg, add_pooling_layer=False)


class SmallCNN(torch.nn.Module):
    """conv/batchnorm/relu/maxpool stem, one residual block, global average pool, linear head."""

    def __init__(self):
        super().__init__()
        c = torch.nn
        self.stem = c.Sequential(c.Conv2d(3, 16, 3, padding=1), c.BatchNorm2d(16), c.ReLU(), c.MaxPool2d(2))
        self.block = c.Sequential(c.Conv2d(16, 16, 3, padding=1), c.BatchNorm2d(16), c.ReLU(),
                                  c.Conv2d(16, 16, 3, padding=1), c.BatchNorm2d(16))
        self.head = c.Linear(16, 10)

    def forward(self, image):
        x = self.stem(image)
        x = torch.relu(x + self.block(x))
        x = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.head(x)


def randomize_bn(model, seed=SEED):
    """Non-trivial BatchNorm statistics and affine parameters, so folding BN is not a no-op."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)


# ---------------------------------------------------------------------------------------------
# export machinery


def causal_mask_4d(ids, dtype=torch.float32):
    """The additive causal mask transformers' eager attention adds to the scores: 0 where a query
    may attend, finfo.min above the diagonal; shape [batch, 1, seq, seq]. Traces with symbolic
    batch/seq sizes."""
    b, s = ids.shape[0], ids.shape[1]
    pos = torch.arange(s, device=ids.device)
    blocked = pos[None, :] > pos[:, None]
    m = torch.zeros((s, s), dtype=dtype, device=ids.device).masked_fill(blocked, torch.finfo(dtype).min)
    return m[None, None, :, :].expand(b, 1, s, s)


# how each family is called and which output field is the graph output
FAMILIES = {
    "causal-lm": {"inputs": ["input_ids"], "field": "logits"},
    "causal-lm-mask": {"inputs": ["input_ids", "attention_mask"], "field": "logits"},
    "encoder-ids": {"inputs": ["input_ids"], "field": "last_hidden_state"},
    "encoder": {"inputs": ["input_ids", "attention_mask"], "field": "last_hidden_state"},
    "vision": {"inputs": ["pixel_values"], "field": "last_hidden_state"},
    "plain": {"inputs": None, "field": None},
}


def call(model, family, args, mask4d=False):
    """Calls the model as exported: keyword inputs, the first/named output as a plain tensor."""
    if family == "plain":
        return model(*args)
    names = FAMILIES[family]["inputs"]
    kwargs = dict(zip(names, args))
    if mask4d:
        kwargs["attention_mask"] = causal_mask_4d(args[0])
    out = model(**kwargs)
    field = FAMILIES[family]["field"]
    if hasattr(out, field) and getattr(out, field) is not None:
        return getattr(out, field)
    return out[0] if isinstance(out, (tuple, list)) else out


@contextlib.contextmanager
def exportable(model, family, mask4d=False):
    """Temporarily swaps the model's class for a subclass whose forward(*tensors) returns one
    tensor. Unlike a wrapper module this adds no name prefix: ONNX initializer names stay the
    model's own parameter names (e.g. model.layers.0.self_attn.q_proj.weight, or
    base_model.model.... for a PEFT model), which is what adapter keys refer to."""
    if family == "plain":
        yield model
        return
    orig_cls = model.__class__
    orig_forward = orig_cls.forward

    def impl(self, args):
        return call(lambda **kw: orig_forward(self, **kw), family, args, mask4d)  # the original forward, not this one

    # forward with named positional parameters (input_ids, attention_mask, ...): both exporters see a plain signature
    params = ", ".join(FAMILIES[family]["inputs"])
    ns = {"_impl": impl}
    exec(f"def forward(self, {params}):\n    return _impl(self, ({params},))\n", ns)  # noqa: S102
    _Exportable = type(orig_cls.__name__, (orig_cls,), {"forward": ns["forward"]})  # noqa: N806

    _Exportable.__qualname__ = orig_cls.__qualname__
    model.__class__ = _Exportable
    try:
        yield model
    finally:
        model.__class__ = orig_cls


def opset_of(path):
    m = onnx.load(path, load_external_data=False)
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def export(model, family, args, path, input_names, output_names, dynamic_axes=None, dynamo=False,
           ts_options=None, allow_dynamo_fallback=True, log=None):
    """Exports model to path. Returns a record: exporter ('torchscript' | 'dynamo'), opset,
    workaround (None | 'explicit-4d-causal-mask'), and the errors of the attempts that failed.
    For the TorchScript exporter, causal LMs are retried with an explicit 4-D causal mask."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    rec = {"exporter": None, "opset": None, "workaround": None, "failed_attempts": []}
    names = dict(input_names=input_names, output_names=output_names)

    def attempt(label, fn):
        try:
            fn()
            return True
        except Exception as e:  # noqa: BLE001 - recorded, and the next attempt is tried
            msg = f"{type(e).__name__}: {e}"
            rec["failed_attempts"].append({"attempt": label, "error": msg[:3000]})
            if log is not None:
                log.write(f"--- {path}: attempt '{label}' failed\n{traceback.format_exc()}\n")
                log.flush()
            print(f"  {os.path.basename(os.path.dirname(path))}: {label} failed: {msg[:300]}", flush=True)
            return False

    if not dynamo:
        variants = [False, True] if family == "causal-lm" else [False]
        for mask4d in variants:
            def ts(mask4d=mask4d):
                with torch.no_grad(), exportable(model, family, mask4d) as m:
                    torch.onnx.export(m, tuple(args), path, dynamo=False, opset_version=OPSET,
                                      dynamic_axes=dynamic_axes, **names, **(ts_options or {}))
            if attempt("torchscript" + (" + explicit 4-D causal mask" if mask4d else ""), ts):
                rec.update(exporter="torchscript", opset=opset_of(path),
                           workaround="explicit-4d-causal-mask" if mask4d else None)
                return rec
        if not allow_dynamo_fallback:
            raise RuntimeError(f"TorchScript export failed: {rec['failed_attempts']}")
    for opset in (OPSET, 18):
        def dyn(opset=opset):
            with torch.no_grad(), exportable(model, family) as m:
                torch.onnx.export(m, tuple(args), path, dynamo=True, opset_version=opset, external_data=False,
                                  dynamic_axes=dynamic_axes, **names)
        if attempt(f"dynamo opset {opset}", dyn):
            rec.update(exporter="dynamo", opset=opset_of(path))
            return rec
    raise RuntimeError(f"every export attempt failed: {rec['failed_attempts']}")


def run_ort(path, feeds):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    outs = sess.run(None, {n: feeds[n] for n in names})
    return sess, names, outs


def dims(value_info):
    return [d.dim_param if d.dim_param else d.dim_value for d in value_info.type.tensor_type.shape.dim]


def write_data_set(d, k, sess_inputs, feeds, sess_outputs, outs):
    ds = os.path.join(d, f"test_data_set_{k}")
    os.makedirs(ds, exist_ok=True)
    for i, n in enumerate(sess_inputs):
        onnx.save_tensor(numpy_helper.from_array(feeds[n], n), os.path.join(ds, f"input_{i}.pb"))
    for i, (o, y) in enumerate(zip(sess_outputs, outs)):
        onnx.save_tensor(numpy_helper.from_array(y, o), os.path.join(ds, f"output_{i}.pb"))


def save_case(out_dir, name, model, family, data_sets, input_names, output_names, dynamic_axes=None, dynamo=False,
              ts_options=None, log=None):
    """data_sets: list of input tuples (torch tensors); the first is used for the export."""
    d = os.path.join(out_dir, name)
    path = os.path.join(d, "model.onnx")
    model.eval()
    rec = export(model, family, data_sets[0], path, input_names, output_names, dynamic_axes, dynamo, ts_options, log=log)
    m = onnx.load(path)
    graph_inputs = {i.name: i for i in m.graph.input}
    info = {"name": name, "family": family, **rec, "nodes": len(m.graph.node), "initializers": len(m.graph.initializer),
            "op_types": sorted({n.op_type for n in m.graph.node}), "bytes": os.path.getsize(path),
            "dynamic_axes": dynamic_axes, "data_sets": []}
    dropped = [n for n in input_names if n not in graph_inputs]
    if dropped:
        info["inputs_dropped_by_exporter"] = dropped
    for k, args in enumerate(data_sets):
        with torch.no_grad():
            ref = call(model, family, args).detach().cpu().numpy()
        feeds = {n: x.cpu().numpy() for n, x in zip(input_names, args)}
        sess, names, outs = run_ort(path, feeds)
        onames = [o.name for o in sess.get_outputs()]
        write_data_set(d, k, names, feeds, onames, outs)
        info["data_sets"].append({
            "inputs": [{"name": n, "shape": list(feeds[n].shape), "dtype": str(feeds[n].dtype), "declared": dims(graph_inputs[n])}
                       for n in names],
            "outputs": [{"name": o, "shape": list(y.shape), "dtype": str(y.dtype),
                         "declared": dims(next(v for v in m.graph.output if v.name == o))} for o, y in zip(onames, outs)],
            "torch_vs_ort_max_abs_diff": float(np.max(np.abs(outs[0] - ref))),
        })
    info["torch_vs_ort_max_abs_diff"] = max(s["torch_vs_ort_max_abs_diff"] for s in info["data_sets"])
    return info


def versions():
    v = {"python": sys.version.split()[0], "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
         "numpy": np.__version__}
    for mod in ("transformers", "peft", "onnxscript"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            v[mod] = None
    return v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="models/zoo")
    p.add_argument("--log", default=None, help="file for full tracebacks of failed export attempts")
    p.add_argument("--only", default=None, help="comma-separated fixture names")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    log = open(a.log, "a") if a.log else None
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    mask = torch.ones(BATCH, SEQ, dtype=torch.int64)
    pixels = torch.randn(BATCH, 3, 32, 32, generator=g)
    ids2 = torch.randint(0, VOCAB, (DYN_BATCH, DYN_SEQ), generator=g)
    mask2 = torch.ones(DYN_BATCH, DYN_SEQ, dtype=torch.int64)
    manifest = {"generator": "python3 models/export_zoo.py --out models/zoo", "seed": SEED, "versions": versions(),
                "models": [], "failures": []}
    seq_axes = {0: "batch", 1: "seq"}
    jobs = [
        # name, builder, family, data sets, input names, output names, dynamic axes, dynamo, extra TorchScript options
        ("llama-static", tiny_llama, "causal-lm", [(ids,)], ["input_ids"], ["logits"], None, False, None),
        ("llama-dynamic", tiny_llama, "causal-lm", [(ids,), (ids2,)], ["input_ids"], ["logits"],
         {"input_ids": seq_axes, "logits": seq_axes}, False, None),
        # the exporter's own constant folding off: Transpose(W), Shape/Gather chains etc. left for peftc to fold
        ("llama-nofold", tiny_llama, "causal-lm", [(ids,)], ["input_ids"], ["logits"], None, False,
         {"do_constant_folding": False}),
        # input_ids + a 2-D attention_mask, as optimum-style exports have them (transformers builds the mask in-graph)
        ("llama-mask-dynamic", tiny_llama, "causal-lm-mask", [(ids, mask), (ids2, mask2)], ["input_ids", "attention_mask"],
         ["logits"], {"input_ids": seq_axes, "attention_mask": seq_axes, "logits": seq_axes}, False, None),
        ("llama-dynamo", tiny_llama, "causal-lm", [(ids,)], ["input_ids"], ["logits"], None, True, None),
        ("gpt2-static", tiny_gpt2, "causal-lm", [(ids,)], ["input_ids"], ["logits"], None, False, None),
        ("bert-static", tiny_bert, "encoder", [(ids, mask)], ["input_ids", "attention_mask"], ["last_hidden_state"], None, False, None),
        ("bert-dynamic", tiny_bert, "encoder", [(ids, mask), (ids2, mask2)], ["input_ids", "attention_mask"], ["last_hidden_state"],
         {"input_ids": seq_axes, "attention_mask": seq_axes, "last_hidden_state": seq_axes}, False, None),
        ("vit-static", tiny_vit, "vision", [(pixels,)], ["pixel_values"], ["last_hidden_state"], None, False, None),
        # the exporter folds BatchNormalization into Conv in eval mode (TrainingMode.EVAL, the default) ...
        ("cnn-static", SmallCNN, "plain", [(pixels,)], ["image"], ["logits"], None, False, None),
        # ... and keeps the BatchNormalization nodes with TrainingMode.PRESERVE on an eval-mode model
        ("cnn-bn", SmallCNN, "plain", [(pixels,)], ["image"], ["logits"], None, False,
         {"training": torch.onnx.TrainingMode.PRESERVE}),
    ]
    only = set(a.only.split(",")) if a.only else None
    for name, make, family, data_sets, ins, outs, dyn, dynamo, ts_options in jobs:
        if only and name not in only:
            continue
        try:
            torch.manual_seed(SEED)
            model = make().eval()
            randomize_bn(model)
            info = save_case(a.out, name, model, family, data_sets, ins, outs, dyn, dynamo, ts_options, log)
            manifest["models"].append(info)
            print(f"zoo: {name} ok: {info['exporter']} opset {info['opset']} workaround={info['workaround']} "
                  f"nodes={info['nodes']} diff={info['torch_vs_ort_max_abs_diff']:.3g}", flush=True)
        except Exception as e:  # record and go on: one exporter failure must not lose the rest
            manifest["failures"].append({"name": name, "error": f"{type(e).__name__}: {e}"[:4000]})
            traceback.print_exc()
            if log is not None:
                log.write(f"--- {name} FAILED\n{traceback.format_exc()}\n")
            print(f"zoo: {name} FAILED: {e}", flush=True)
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
