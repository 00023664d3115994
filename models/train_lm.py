#!/usr/bin/env python3
"""Trains the small byte-level Llama-style language model that the weight-quantization fidelity
benchmark (`npm run bench -- --only quant-fidelity`) measures, exports it to ONNX, and makes
onnxruntime's own 4-bit quantizations of it as the baseline peftc is compared with.

Text: the reStructuredText sources of the Python 3.11 documentation as Debian ships them
(package python3.11-doc, /usr/share/doc/python3.11/html/_sources/**/*.rst.txt, ~11 MB of English
prose and code examples). Files are taken in sorted path order; every 10th file is held out for
evaluation, the rest is training text. Nothing is downloaded; get the text with

    apt-get download python3.11-doc && dpkg -x python3.11-doc_*.deb /tmp/pydoc
    python3 models/train_lm.py --text /tmp/pydoc/usr/share/doc/python3.11/html/_sources --out models/lm

It needs torch, transformers, onnx, onnxruntime (the GPU machine of the `device` tool has them;
training takes a few minutes on one H100, fixed seed 1234). Writes to --out:

  model.onnx        fp32 LlamaForCausalLM, input_ids [batch, seq] int64 -> logits [batch, seq, 256]
                    (TorchScript exporter, opset 17, the zoo's explicit 4-D causal-mask workaround,
                    see models/README.md)
  eval.bin          held-out bytes, cut by the benchmark into windows of --seq bytes
  calib.npy         int64 [calib, seq] windows of training text (calibration data for data-aware
                    quantization: peftc --calib)
  ort-int4-b32-{asym,sym}.onnx, ort-int8-b32-asym.onnx
                    onnxruntime's MatMulNBitsQuantizer (RTN), block 32
  manifest.json     config, versions, training curve, perplexities computed here with torch and
                    with onnxruntime (python) on the same evaluation windows the benchmark uses
"""
import argparse
import glob
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_zoo import exportable  # noqa: E402  (the zoo's export machinery: 4-D mask workaround)

SEED = 1234


def load_text(text_dir):
    paths = sorted(glob.glob(os.path.join(text_dir, "**", "*.txt"), recursive=True))
    if not paths:
        sys.exit(f"train_lm: no *.txt files under {text_dir}")
    train, held = [], []
    for i, p in enumerate(paths):
        with open(p, "rb") as f:
            (held if i % 10 == 0 else train).append(f.read())
    return b"\n".join(train), b"\n".join(held), len(paths)


def windows(data, seq, count=None):
    n = len(data) // seq if count is None else min(count, len(data) // seq)
    arr = np.frombuffer(data[: n * seq], dtype=np.uint8).astype(np.int64)
    return arr.reshape(n, seq)


def perplexity_from_logits(logits, ids):
    """Byte-level perplexity: exp(mean NLL of byte t+1 given bytes <= t), over every window."""
    logits = logits[:, :-1, :].astype(np.float64)
    target = ids[:, 1:]
    m = logits.max(-1, keepdims=True)
    lse = (m[..., 0] + np.log(np.exp(logits - m).sum(-1)))
    picked = np.take_along_axis(logits, target[..., None], -1)[..., 0]
    return float(math.exp((lse - picked).mean()))


def ort_perplexity(path, ids, batch=16):
    import onnxruntime as ort
    so = ort.SessionOptions()
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    outs = [sess.run(None, {"input_ids": ids[i:i + batch]})[0] for i in range(0, len(ids), batch)]
    return perplexity_from_logits(np.concatenate(outs), ids)


def ort_quantize(src, dst, block, symmetric, bits=4):
    """onnxruntime's own MatMulNBitsQuantizer (round to nearest), as its docs show it."""
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as mnq
    model = onnx.load(src)
    t0 = time.perf_counter()
    cfg = mnq.DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=symmetric, bits=bits)
    q = mnq.MatMulNBitsQuantizer(model, block_size=block, is_symmetric=symmetric, algo_config=cfg)
    q.process()
    secs = time.perf_counter() - t0
    q.model.save_model_to_file(dst, False)
    return secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", required=True, help="folder of *.txt files (python3.11-doc _sources)")
    ap.add_argument("--out", default="models/lm")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--eval-windows", type=int, default=128)
    ap.add_argument("--calib", type=int, default=32)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    dev = "cuda" if torch.cuda.is_available() else "cpu"

    train_text, held_text, nfiles = load_text(args.text)
    print(f"text: {nfiles} files, {len(train_text)} training bytes, {len(held_text)} held-out bytes", flush=True)
    data = torch.from_numpy(np.frombuffer(train_text, dtype=np.uint8).astype(np.int64)).to(dev)
    eval_ids = windows(held_text, args.seq, args.eval_windows)
    with open(os.path.join(args.out, "eval.bin"), "wb") as f:
        f.write(held_text[: len(eval_ids) * args.seq])
    rng = np.random.default_rng(SEED)
    starts = rng.integers(0, len(train_text) - args.seq, size=args.calib)
    calib = np.stack([np.frombuffer(train_text[s:s + args.seq], dtype=np.uint8).astype(np.int64) for s in starts])
    np.save(os.path.join(args.out, "calib.npy"), calib)

    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=args.seq,
                      tie_word_embeddings=False, attn_implementation="eager", use_cache=False)
    model = LlamaForCausalLM(cfg).to(dev)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params} parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    warm = 200
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))
    g = torch.Generator(device=dev).manual_seed(SEED)
    curve = []
    t0 = time.perf_counter()
    model.train()
    for step in range(args.steps):
        idx = torch.randint(0, data.numel() - args.seq, (args.batch,), device=dev, generator=g)
        x = data[idx[:, None] + torch.arange(args.seq, device=dev)[None, :]]
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=dev == "cuda"):
            loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps - 1:
            curve.append({"step": step, "loss": round(loss.item(), 4)})
            print(f"step {step} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    train_secs = time.perf_counter() - t0
    model.eval().float().cpu()
    with torch.no_grad():
        logits = torch.cat([model(input_ids=torch.from_numpy(eval_ids[i:i + 16])).logits
                            for i in range(0, len(eval_ids), 16)]).numpy()
    torch_ppl = perplexity_from_logits(logits, eval_ids)
    print(f"torch perplexity (held out, {len(eval_ids)} x {args.seq} bytes): {torch_ppl:.4f}", flush=True)

    path = os.path.join(args.out, "model.onnx")
    example = torch.from_numpy(eval_ids[:2])
    with exportable(model, "causal-lm", mask4d=True) as m:
        torch.onnx.export(m, (example,), path, dynamo=False, opset_version=17, input_names=["input_ids"],
                          output_names=["logits"], dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                                                 "logits": {0: "batch", 1: "seq"}})
    result = {"fp32 (onnxruntime)": ort_perplexity(path, eval_ids)}
    quant_secs = {}
    for bits, sym in ((4, False), (4, True), (8, False)):
        name = f"ort-int{bits}-b32-{'sym' if sym else 'asym'}.onnx"
        try:
            quant_secs[name] = ort_quantize(path, os.path.join(args.out, name), 32, sym, bits)
        except Exception as e:  # noqa: BLE001  (report and go on: the int4 rows are the ones asked for)
            print(f"{name}: onnxruntime's quantizer failed: {e!r}", flush=True)
            continue
        result[name] = ort_perplexity(os.path.join(args.out, name), eval_ids)
    for k, v in result.items():
        print(f"{k}: perplexity {v:.4f}", flush=True)

    import onnx
    import onnxruntime
    import transformers
    manifest = {
        "text": "python3.11-doc (Debian) html/_sources/**/*.rst.txt, sorted; every 10th file held out",
        "text_files": nfiles, "train_bytes": len(train_text), "held_out_bytes": len(held_text),
        "config": cfg.to_dict(), "parameters": params, "seed": SEED,
        "training": {"steps": args.steps, "batch": args.batch, "seq": args.seq, "lr": args.lr,
                     "seconds": round(train_secs, 1), "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
                     "curve": curve},
        "eval": {"windows": int(len(eval_ids)), "seq": args.seq, "file": "eval.bin"},
        "calib": {"windows": args.calib, "seq": args.seq, "file": "calib.npy"},
        "perplexity": {"fp32 (torch)": torch_ppl, **result},
        "ort_quantize_seconds": quant_secs,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__, "numpy": np.__version__},
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, default=str)


if __name__ == "__main__":
    main()
