#!/usr/bin/env python3
"""PEFT fixtures for the LoRA/DoRA merge: references made by PEFT itself.

For a tiny Llama-style model (LoRA on q,k,v,o,gate,up,down), GPT-2 (Conv1D, fan_in_fan_out), a
BERT-style encoder (query, value), a DoRA adapter, an rslora adapter, and two adapters combined
0.7/0.3, this writes under <out>/<case>/:
    base.onnx            the base model, exported (TorchScript exporter, static shapes)
    adapter/ (adapter2/) the PEFT adapter folder(s): adapter_config.json + adapter_model.safetensors
    unmerged.onnx        the PEFT model exported with its LoRA branches (input form 1)
    merged.onnx          PEFT's merge_and_unload(), exported
    merged_weights.safetensors   PEFT's merged weights of every adapted module (torch layout)
    test_data_set_0/     input_ids and the reference logits onnxruntime computes on merged.onnx
manifest.json records what was made, the torch-vs-onnxruntime differences, and versions.

    python3 models/export_peft.py --out models/peft
"""
import argparse
import copy
import json
import os
import sys
import traceback

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_zoo import ReturnTensor, export, tiny_bert, tiny_gpt2, tiny_llama  # noqa: E402

SEED = 1234
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_paths(peft_model):
    from peft.tuners.lora import LoraLayer
    out = []
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer):
            out.append(name.removeprefix("base_model.model."))
    return out


def randomize_lora(peft_model, seed, scale=0.2):
    """Non-zero, seeded LoRA B (PEFT initializes B to zero, which would make every merge trivial)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def run_onnx(path, ids):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: ids.numpy()})[0]


def write_case(out, case, base, ids, field, configs, weights=None, combine=None):
    from peft import LoraConfig, PeftModel, get_peft_model
    d = os.path.join(out, case)
    os.makedirs(d, exist_ok=True)
    info = {"case": case, "adapters": []}
    base = copy.deepcopy(base).eval()
    export(ReturnTensor(base, field), (ids,), os.path.join(d, "base.onnx"), ["input_ids"], ["logits"])
    peft_models = []
    for k, cfg in enumerate(configs):
        pm = get_peft_model(copy.deepcopy(base), LoraConfig(**cfg, lora_dropout=0.0))
        randomize_lora(pm, SEED + k)
        pm.eval()
        folder = os.path.join(d, "adapter" if k == 0 else f"adapter{k + 1}")
        pm.save_pretrained(folder)
        peft_models.append((pm, folder))
        info["adapters"].append({"folder": os.path.basename(folder), "config": {k2: (v if not isinstance(v, set) else sorted(v)) for k2, v in cfg.items()}})
    pm = peft_models[0][0]
    paths = lora_paths(pm)
    if len(configs) == 1:
        with torch.no_grad():
            ref_unmerged = ReturnTensor(pm, field)(ids).numpy()
        info["exporter_unmerged"] = export(ReturnTensor(pm, field), (ids,), os.path.join(d, "unmerged.onnx"), ["input_ids"], ["logits"])
        info["unmerged_torch_vs_ort"] = float(np.max(np.abs(run_onnx(os.path.join(d, "unmerged.onnx"), ids) - ref_unmerged)))
        merged = pm.merge_and_unload().eval()
    else:
        # Two adapters, weighted: PEFT's 'cat' combination merges to sum_i w_i * s_i * B_i A_i.
        model = PeftModel.from_pretrained(copy.deepcopy(base), peft_models[0][1], adapter_name="a")
        model.load_adapter(peft_models[1][1], adapter_name="b")
        model.add_weighted_adapter(["a", "b"], weights, "ab", combination_type=combine)
        model.set_adapter("ab")
        merged = model.merge_and_unload().eval()
        info["combination"] = {"weights": weights, "combination_type": combine}
    with torch.no_grad():
        ref = ReturnTensor(merged, field)(ids).numpy()
    info["exporter_merged"] = export(ReturnTensor(merged, field), (ids,), os.path.join(d, "merged.onnx"), ["input_ids"], ["logits"])
    outs = run_onnx(os.path.join(d, "merged.onnx"), ids)
    info["merged_torch_vs_ort"] = float(np.max(np.abs(outs - ref)))
    with torch.no_grad():
        base_out = ReturnTensor(base, field)(ids).numpy()
    info["adapter_changes_output_by"] = float(np.max(np.abs(outs - base_out)))
    ds = os.path.join(d, "test_data_set_0")
    os.makedirs(ds, exist_ok=True)
    onnx.save_tensor(numpy_helper.from_array(ids.numpy(), "input_ids"), os.path.join(ds, "input_0.pb"))
    onnx.save_tensor(numpy_helper.from_array(outs, "logits"), os.path.join(ds, "output_0.pb"))
    weights_out = {f"{p}.weight": merged.get_submodule(p).weight.detach().contiguous() for p in paths}
    save_file(weights_out, os.path.join(d, "merged_weights.safetensors"))
    info["modules"] = paths
    return info


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="models/peft")
    a = p.parse_args()
    import peft
    import transformers
    manifest = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                "onnx": onnx.__version__, "onnxruntime": ort.__version__, "cases": [], "failures": []}
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, 256, (2, 16), generator=g)
    torch.manual_seed(SEED)
    llama = tiny_llama().eval()
    torch.manual_seed(SEED)
    gpt2 = tiny_gpt2().eval()
    torch.manual_seed(SEED)
    bert = tiny_bert().eval()
    lora = dict(r=8, lora_alpha=16, target_modules=LLAMA_TARGETS, init_lora_weights=False)
    jobs = [
        ("llama-lora", llama, "logits", [lora], None, None),
        ("gpt2-lora", gpt2, "logits", [dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True, init_lora_weights=False)], None, None),
        ("bert-lora", bert, "last_hidden_state", [dict(r=4, lora_alpha=4, target_modules=["query", "value"], init_lora_weights=False)], None, None),
        ("llama-dora", llama, "logits", [dict(lora, use_dora=True)], None, None),
        ("llama-rslora", llama, "logits", [dict(lora, use_rslora=True, rank_pattern={"q_proj": 4}, alpha_pattern={"v_proj": 32})], None, None),
        ("llama-two-adapters", llama, "logits", [lora, dict(lora, lora_alpha=8)], [0.7, 0.3], "cat"),
    ]
    for case, base, field, configs, weights, combine in jobs:
        try:
            manifest["cases"].append(write_case(a.out, case, base, ids, field, configs, weights, combine))
            print(f"peft: {case} ok", flush=True)
        except Exception as e:
            manifest["failures"].append({"case": case, "error": f"{type(e).__name__}: {e}"[:2000]})
            traceback.print_exc()
            print(f"peft: {case} FAILED: {e}", flush=True)
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
