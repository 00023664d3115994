#!/usr/bin/env python3
"""PEFT fixtures for the LoRA/DoRA merge, with references made by PEFT itself.

Cases (tiny random models from models/export_zoo.py, fixed seeds, no downloads):
    llama-lora          Llama-style, LoRA r=8 alpha=16 on q,k,v,o,gate,up,down
    gpt2-lora           GPT-2, LoRA on c_attn/c_proj (Conv1D, fan_in_fan_out=True)
    bert-lora           BERT-style encoder, LoRA on query/value
    llama-dora          Llama-style, DoRA (use_dora=True)
    llama-rslora        Llama-style, rsLoRA (use_rslora=True) plus rank_pattern/alpha_pattern
    llama-two-adapters  two Llama adapters combined 0.7/0.3 (see below)
    bert-lora-bias-all       BERT, LoRA on query/value with bias="all" (every bias trained)
    bert-lora-bias-lora-only BERT, LoRA with bias="lora_only" (the adapted layers' biases trained)
    llama-modules-to-save    Llama LoRA with modules_to_save=["lm_head"] (a re-trained head)

Each case directory <out>/<case>/ holds
    base.onnx            the base model (TorchScript exporter, opset 17, static shapes)
    adapter/ [adapter2/] the PEFT adapter folder(s) (save_pretrained: adapter_config.json +
                         adapter_model.safetensors), LoRA A and B both seeded random non-zero
    unmerged.onnx        the PEFT model exported with its LoRA/DoRA branches in the graph
    merged.onnx          the merged model exported (PEFT merge_and_unload(); see two-adapters)
    merged_weights/<module>.weight.pb   the merged weight of every adapted module, as PEFT
                         computed it, in torch layout (nn.Linear [out, in]; GPT-2 Conv1D [in, out])
    merged_weights.safetensors   the same tensors in one file, keyed <module>.weight
    test_data_set_0/     inputs and the reference outputs onnxruntime computed on merged.onnx
<out>/manifest.json records per case the exporters, opsets, node counts, the adapters' configs,
and the differences: torch-vs-onnxruntime for unmerged and merged, merged-vs-unmerged, and how far
the adapter moves the output away from the base model.

Two adapters (llama-two-adapters): the reference is the weighted sum of the adapters' deltas,
    W' = W + 0.7 * dW_a + 0.3 * dW_b,   dW_x = merge_and_unload(base + x).W - W
computed by merging each adapter alone on a copy and summing the deltas (merged.onnx and
merged_weights/ are this). The unmerged export, unmerged_cat.onnx (not unmerged.onnx: its
combined adapter is in neither adapter folder), is PEFT's add_weighted_adapter(..., [0.7, 0.3],
combination_type='cat') adapter (rank r_a + r_b), which equals that sum exactly; the manifest
records its max weight difference from the manual sum. PEFT's combination_type='linear' is NOT
this sum (it mixes A's and B's separately, sqrt(w)-scaled, giving cross terms B_a A_b); the
manifest records how far it is from the manual sum, for the record only.

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
import torch
from onnx import numpy_helper
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_zoo import (SEED, VOCAB, BATCH, SEQ, call, export, run_ort, tiny_bert, tiny_gpt2,  # noqa: E402
                        tiny_llama, versions, write_data_set)

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
COMBINE_WEIGHTS = [0.7, 0.3]
# the two-adapter case's unmerged export is named apart: a form-1 merge of unmerged.onnx with the
# first adapter alone is what the single-adapter cases check, and it does not apply here
UNMERGED_CAT = "unmerged_cat.onnx"


def lora_paths(peft_model):
    """Module paths (relative to the base model) of every LoRA layer."""
    from peft.tuners.lora import LoraLayer
    return [name.removeprefix("base_model.model.") for name, m in peft_model.named_modules() if isinstance(m, LoraLayer)]


def randomize_lora(peft_model, seed, scale=0.2):
    """Seeded non-zero LoRA A and B (PEFT's default B = 0 would make every merge trivial), and every
    other trainable tensor moved as training would move it: the biases bias='all'/'lora_only' trains,
    the copies modules_to_save trains (a step of half the tensor's spread, or 0.1 for a zero bias)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            elif p.requires_grad:
                spread = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.1
                p.add_(torch.randn(p.shape, generator=g) * 0.5 * spread)


def torch_out(model, family, args):
    with torch.no_grad():
        return call(model, family, args).detach().cpu().numpy()


def maxdiff(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def weights_of(model, paths):
    return {p: model.get_submodule(p).weight.detach().clone() for p in paths}


def export_file(model, family, args, path, input_names, log):
    rec = export(model, family, args, path, input_names, ["logits" if family == "causal-lm" else "last_hidden_state"],
                 log=log)
    m = onnx.load(path)
    rec.update(nodes=len(m.graph.node), initializers=len(m.graph.initializer), bytes=os.path.getsize(path))
    return rec


def write_case(out, case, base, family, args, input_names, configs, log):
    from peft import LoraConfig, PeftModel, get_peft_model
    d = os.path.join(out, case)
    os.makedirs(d, exist_ok=True)
    base = copy.deepcopy(base).eval()
    info = {"case": case, "family": family, "adapters": [], "files": {}}
    feeds = {n: x.cpu().numpy() for n, x in zip(input_names, args)}

    info["files"]["base.onnx"] = export_file(base, family, args, os.path.join(d, "base.onnx"), input_names, log)
    base_out = torch_out(base, family, args)
    base_w = None

    # the adapters: created, randomized, saved, and checked to reload to the same outputs
    pms = []
    for k, cfg in enumerate(configs):
        task = "CAUSAL_LM" if family == "causal-lm" else "FEATURE_EXTRACTION"
        pm = get_peft_model(copy.deepcopy(base), LoraConfig(task_type=task, lora_dropout=0.0, **cfg))
        randomize_lora(pm, SEED + k)
        pm.eval()
        folder = os.path.join(d, "adapter" if k == 0 else f"adapter{k + 1}")
        pm.save_pretrained(folder)
        readme = os.path.join(folder, "README.md")  # the generated model-card stub: nothing a test reads
        if os.path.exists(readme):
            os.remove(readme)
        reloaded = PeftModel.from_pretrained(copy.deepcopy(base), folder).eval()
        with open(os.path.join(folder, "adapter_config.json")) as f:
            saved_cfg = json.load(f)
        info["adapters"].append({
            "folder": os.path.basename(folder), "seed": SEED + k,
            "config": {k2: (sorted(v) if isinstance(v, set) else v) for k2, v in cfg.items()},
            "saved_config": {k2: saved_cfg.get(k2) for k2 in ("r", "lora_alpha", "target_modules", "fan_in_fan_out",
                                                              "use_dora", "use_rslora", "rank_pattern", "alpha_pattern",
                                                              "task_type", "peft_type", "bias", "modules_to_save")},
            "reload_vs_original_max_abs_diff": maxdiff(torch_out(reloaded, family, args), torch_out(pm, family, args)),
        })
        pms.append((pm, folder))
    paths = lora_paths(pms[0][0])
    base_w = weights_of(base, paths)

    if len(configs) == 1:
        pm = pms[0][0]
        unmerged_model = pm
        unmerged_ref = torch_out(pm, family, args)
        info["files"]["unmerged.onnx"] = export_file(pm, family, args, os.path.join(d, "unmerged.onnx"), input_names, log)
        merged = pm.merge_and_unload().eval()
        info["merge"] = "PEFT merge_and_unload()"
    else:
        # reference: W + sum_i w_i * dW_i, each dW_i from merging adapter i alone on a copy
        deltas = []
        for pm, _ in pms:
            mw = weights_of(copy.deepcopy(pm).merge_and_unload(), paths)
            deltas.append({p: mw[p] - base_w[p] for p in paths})
        merged = copy.deepcopy(base).eval()
        with torch.no_grad():
            for p in paths:
                merged.get_submodule(p).weight.add_(sum(w * dl[p] for w, dl in zip(COMBINE_WEIGHTS, deltas)))
        manual_w = weights_of(merged, paths)
        manual_out = torch_out(merged, family, args)
        info["merge"] = (f"manual: W + {COMBINE_WEIGHTS[0]} * dW_adapter + {COMBINE_WEIGHTS[1]} * dW_adapter2, "
                         "dW from merge_and_unload() of each adapter alone")
        info["combination"] = {"weights": COMBINE_WEIGHTS, "reference": "manual weighted sum of deltas"}
        for ctype in ("cat", "linear"):
            try:
                model = PeftModel.from_pretrained(copy.deepcopy(base), pms[0][1], adapter_name="a")
                model.load_adapter(pms[1][1], adapter_name="b")
                model.add_weighted_adapter(["a", "b"], COMBINE_WEIGHTS, "ab", combination_type=ctype)
                model.set_adapter("ab")
                model.eval()
                rec = {"unmerged_torch_vs_manual_output": maxdiff(torch_out(model, family, args), manual_out)}
                if ctype == "cat":
                    unmerged_model = model
                    unmerged_ref = torch_out(model, family, args)
                    info["files"][UNMERGED_CAT] = export_file(model, family, args, os.path.join(d, UNMERGED_CAT),
                                                              input_names, log)
                    info["files"][UNMERGED_CAT]["adapter"] = "add_weighted_adapter(['a','b'], [0.7, 0.3], combination_type='cat')"
                    model = copy.deepcopy(model)
                mw = weights_of(model.merge_and_unload(), paths)
                rec["merged_weights_vs_manual_max_abs_diff"] = max(maxdiff(mw[p], manual_w[p]) for p in paths)
                info["combination"][ctype] = rec
            except Exception as e:  # noqa: BLE001
                info["combination"][ctype] = {"error": f"{type(e).__name__}: {e}"[:2000]}
                if log is not None:
                    log.write(f"--- {case} combination {ctype}\n{traceback.format_exc()}\n")

    merged.eval()
    merged_ref = torch_out(merged, family, args)
    merged_path = os.path.join(d, "merged.onnx")
    info["files"]["merged.onnx"] = export_file(merged, family, args, merged_path, input_names, log)
    sess, names, outs = run_ort(merged_path, feeds)
    write_data_set(d, 0, names, feeds, [o.name for o in sess.get_outputs()], outs)
    unmerged_file = "unmerged.onnx" if len(configs) == 1 else UNMERGED_CAT
    _, _, un_outs = run_ort(os.path.join(d, unmerged_file), feeds)
    info["data_set_0"] = {
        "inputs": [{"name": n, "shape": list(feeds[n].shape), "dtype": str(feeds[n].dtype)} for n in names],
        "outputs": [{"name": o.name, "shape": list(y.shape), "dtype": str(y.dtype)} for o, y in zip(sess.get_outputs(), outs)],
        "reference": "onnxruntime CPU on merged.onnx",
    }
    info["diffs"] = {
        "merged_torch_vs_ort": maxdiff(outs[0], merged_ref),
        "unmerged_torch_vs_ort": maxdiff(un_outs[0], unmerged_ref),
        "merged_vs_unmerged_torch": maxdiff(merged_ref, unmerged_ref),
        "merged_vs_unmerged_ort": maxdiff(outs[0], un_outs[0]),
        "adapter_changes_output_by": maxdiff(outs[0], base_out),
    }
    wd = os.path.join(d, "merged_weights")
    os.makedirs(wd, exist_ok=True)
    merged_w = weights_of(merged, paths)
    info["merged_weights"] = []
    # the same weights in one file, keyed <module>.weight (test/peft-references.test.ts reads this)
    save_file({f"{p}.weight": merged_w[p].contiguous() for p in paths}, os.path.join(d, "merged_weights.safetensors"))
    for p in paths:
        t = merged_w[p].contiguous().numpy()
        onnx.save_tensor(numpy_helper.from_array(t, f"{p}.weight"), os.path.join(wd, f"{p}.weight.pb"))
        info["merged_weights"].append({"module": p, "file": f"merged_weights/{p}.weight.pb", "shape": list(t.shape),
                                       "layout": ("Conv1D [in, out]" if type(merged.get_submodule(p)).__name__ == "Conv1D"
                                                  else "Linear [out, in]"),
                                       "max_abs_change_from_base": maxdiff(t, base_w[p].numpy())})
    del unmerged_model
    return info


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="models/peft")
    p.add_argument("--log", default=None, help="file for full tracebacks of failed attempts")
    p.add_argument("--only", default=None, help="comma-separated case names")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    log = open(a.log, "a") if a.log else None
    manifest = {"generator": "python3 models/export_peft.py --out models/peft", "seed": SEED, "versions": versions(),
                "cases": [], "failures": []}
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    mask = torch.ones(BATCH, SEQ, dtype=torch.int64)
    torch.manual_seed(SEED)
    llama = tiny_llama().eval()
    torch.manual_seed(SEED)
    gpt2 = tiny_gpt2().eval()
    torch.manual_seed(SEED)
    bert = tiny_bert().eval()
    lora = dict(r=8, lora_alpha=16, target_modules=LLAMA_TARGETS, init_lora_weights=False)
    lm = ("causal-lm", (ids,), ["input_ids"])
    enc = ("encoder-ids", (ids,), ["input_ids"])  # input_ids only: test/peft-references.test.ts feeds just that
    jobs = [
        ("llama-lora", llama, lm, [lora]),
        ("gpt2-lora", gpt2, lm, [dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True,
                                      init_lora_weights=False)]),
        ("bert-lora", bert, enc, [dict(r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights=False)]),
        ("llama-dora", llama, lm, [dict(lora, use_dora=True)]),
        ("llama-rslora", llama, lm, [dict(lora, use_rslora=True, rank_pattern={"q_proj": 4}, alpha_pattern={"v_proj": 32})]),
        ("llama-two-adapters", llama, lm, [lora, dict(lora, lora_alpha=8)]),
        # trained biases (PEFT's bias='all' / 'lora_only') and whole replaced layers (modules_to_save)
        ("bert-lora-bias-all", bert, enc, [dict(r=4, lora_alpha=8, target_modules=["query", "value"],
                                                init_lora_weights=False, bias="all")]),
        ("bert-lora-bias-lora-only", bert, enc, [dict(r=4, lora_alpha=8, target_modules=["query", "value"],
                                                      init_lora_weights=False, bias="lora_only")]),
        ("llama-modules-to-save", llama, lm, [dict(lora, modules_to_save=["lm_head"])]),
    ]
    only = set(a.only.split(",")) if a.only else None
    for case, base, (family, args, input_names), configs in jobs:
        if only and case not in only:
            continue
        try:
            info = write_case(a.out, case, base, family, args, input_names, configs, log)
            manifest["cases"].append(info)
            print(f"peft: {case} ok: " + json.dumps(info["diffs"]) + " " +
                  json.dumps({f: (r["exporter"], r["opset"], r["workaround"], r["nodes"]) for f, r in info["files"].items()}),
                  flush=True)
            if "combination" in info:
                print("  combination: " + json.dumps(info["combination"]), flush=True)
        except Exception as e:  # noqa: BLE001 - record and go on
            manifest["failures"].append({"case": case, "error": f"{type(e).__name__}: {e}"[:4000]})
            traceback.print_exc()
            if log is not None:
                log.write(f"--- {case} FAILED\n{traceback.format_exc()}\n")
            print(f"peft: {case} FAILED: {e}", flush=True)
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
