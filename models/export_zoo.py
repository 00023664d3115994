#!/usr/bin/env python3
"""Model zoo fixtures: small torch-exported BERT-, GPT-2-, Llama- and ViT-style models and a CNN.

Each model is built from a small random config with a fixed seed (no downloads), exported to
ONNX, and stored as <out>/<name>/model.onnx with test_data_set_0/{input,output}_K.pb (ONNX
TensorProto files) whose outputs onnxruntime computed on the exported model. manifest.json
records exporter, opset, node count, the torch-vs-onnxruntime max abs difference and versions.

    python3 models/export_zoo.py --out models/zoo        (run where torch + transformers are)

The TorchScript-based exporter (dynamo=False) is used; where it is unavailable the dynamo
exporter is used and the manifest says so.
"""
import argparse
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


def export(model, args, path, input_names, output_names, dynamic_axes=None, dynamo=False):
    """Exports with the TorchScript-based exporter (dynamo=False) unless dynamo is asked for or
    the TorchScript exporter is unavailable; returns which exporter wrote the file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    kwargs = dict(input_names=input_names, output_names=output_names)
    if not dynamo:
        try:
            torch.onnx.export(model, args, path, dynamo=False, opset_version=OPSET, do_constant_folding=True,
                              dynamic_axes=dynamic_axes, **kwargs)
            return "torchscript"
        except Exception as e:  # noqa: BLE001 - fall back, and say so
            print(f"torchscript exporter failed ({type(e).__name__}: {e}); using dynamo", flush=True)
    torch.onnx.export(model, args, path, dynamo=True, opset_version=max(OPSET, 18), external_data=False, **kwargs)
    return "dynamo"


def save_case(out_dir, name, model, inputs, input_names, output_names, dynamic_axes=None, dynamo=False):
    d = os.path.join(out_dir, name)
    path = os.path.join(d, "model.onnx")
    model.eval()
    with torch.no_grad():
        exporter = export(model, tuple(inputs), path, input_names, output_names, dynamic_axes, dynamo)
        ref = model(*inputs)
    if isinstance(ref, (tuple, list)):
        ref = ref[0]
    if hasattr(ref, "logits"):
        ref = ref.logits
    if hasattr(ref, "last_hidden_state"):
        ref = ref.last_hidden_state
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {i.name: x.cpu().numpy() for i, x in zip(sess.get_inputs(), inputs)}
    outs = sess.run(None, feeds)
    ds = os.path.join(d, "test_data_set_0")
    os.makedirs(ds, exist_ok=True)
    for k, (i, x) in enumerate(zip(sess.get_inputs(), inputs)):
        onnx.save_tensor(numpy_helper.from_array(x.cpu().numpy(), i.name), os.path.join(ds, f"input_{k}.pb"))
    for k, (o, y) in enumerate(zip(sess.get_outputs(), outs)):
        onnx.save_tensor(numpy_helper.from_array(y, o.name), os.path.join(ds, f"output_{k}.pb"))
    m = onnx.load(path)
    diff = float(np.max(np.abs(outs[0] - ref.detach().cpu().numpy()))) if hasattr(ref, "detach") else None
    return {
        "name": name,
        "exporter": exporter,
        "opset": OPSET,
        "nodes": len(m.graph.node),
        "initializers": len(m.graph.initializer),
        "inputs": [{"name": i.name, "shape": list(x.shape), "dtype": str(x.dtype)} for i, x in zip(sess.get_inputs(), inputs)],
        "outputs": [{"name": o.name, "shape": list(y.shape)} for o, y in zip(sess.get_outputs(), outs)],
        "torch_vs_ort_max_abs_diff": diff,
        "bytes": os.path.getsize(path),
    }


class ReturnTensor(torch.nn.Module):
    """Exposes a transformers model's first output as a plain tensor, keeping module names under 'model.'."""

    def __init__(self, model, field):
        super().__init__()
        self.model = model
        self.field = field

    def forward(self, *args):
        out = self.model(*args)
        return getattr(out, self.field) if hasattr(out, self.field) else out[0]


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, use_cache=False, attn_implementation="eager")
    return LlamaForCausalLM(cfg)


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=256, n_embd=64, n_layer=2, n_head=4, n_positions=64, use_cache=False, attn_implementation="eager")
    return GPT2LMHeadModel(cfg)


def tiny_bert():
    from transformers import BertConfig, BertModel
    cfg = BertConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     max_position_embeddings=64, attn_implementation="eager")
    return BertModel(cfg, add_pooling_layer=False)


def tiny_vit():
    from transformers import ViTConfig, ViTModel
    cfg = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, attn_implementation="eager")
    return ViTModel(cfg, add_pooling_layer=False)


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        c = torch.nn
        self.stem = c.Sequential(c.Conv2d(3, 16, 3, padding=1), c.BatchNorm2d(16), c.ReLU(), c.MaxPool2d(2))
        self.block = c.Sequential(c.Conv2d(16, 16, 3, padding=1), c.BatchNorm2d(16), c.ReLU(), c.Conv2d(16, 16, 3, padding=1), c.BatchNorm2d(16))
        self.head = c.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        x = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.head(x)


def randomize_bn(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="models/zoo")
    a = p.parse_args()
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, 256, (2, 16), generator=g)
    mask = torch.ones(2, 16, dtype=torch.int64)
    pixels = torch.randn(2, 3, 32, 32, generator=g)
    manifest = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__, "models": [], "failures": []}
    try:
        import transformers
        manifest["transformers"] = transformers.__version__
    except Exception:
        pass
    jobs = [
        ("llama-static", lambda: ReturnTensor(tiny_llama(), "logits"), [ids], ["input_ids"], ["logits"], None, False),
        ("llama-dynamic", lambda: ReturnTensor(tiny_llama(), "logits"), [ids], ["input_ids"], ["logits"], {"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}, False),
        ("llama-dynamo", lambda: ReturnTensor(tiny_llama(), "logits"), [ids], ["input_ids"], ["logits"], None, True),
        ("gpt2-static", lambda: ReturnTensor(tiny_gpt2(), "logits"), [ids], ["input_ids"], ["logits"], None, False),
        ("bert-static", lambda: ReturnTensor(tiny_bert(), "last_hidden_state"), [ids, mask], ["input_ids", "attention_mask"], ["last_hidden_state"], None, False),
        ("bert-dynamic", lambda: ReturnTensor(tiny_bert(), "last_hidden_state"), [ids, mask], ["input_ids", "attention_mask"], ["last_hidden_state"], {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "last_hidden_state": {0: "batch", 1: "seq"}}, False),
        ("vit-static", lambda: ReturnTensor(tiny_vit(), "last_hidden_state"), [pixels], ["pixel_values"], ["last_hidden_state"], None, False),
        ("cnn-static", lambda: SmallCNN(), [pixels], ["image"], ["logits"], None, False),
    ]
    for name, make, inputs, ins, outs, dyn, dynamo in jobs:
        try:
            torch.manual_seed(SEED)
            model = make()
            randomize_bn(model)
            manifest["models"].append(save_case(a.out, name, model, inputs, ins, outs, dyn, dynamo))
            print(f"zoo: {name} ok", flush=True)
        except Exception as e:  # record and go on: one exporter failure must not lose the rest
            manifest["failures"].append({"name": name, "error": f"{type(e).__name__}: {e}"[:2000]})
            traceback.print_exc()
            print(f"zoo: {name} FAILED: {e}", flush=True)
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
