#!/usr/bin/env python3
"""Trains the digits CNN fixture: a small convolutional network on scikit-learn's bundled digits
set (1,797 8x8 grayscale images of handwritten digits, UCI), exported to ONNX for the INT8 tests
(test/int8-digits.test.ts: int8 accuracy within 0.5 points of fp32) and `npm run bench -- --only int8`.

Re-runnable on the CPU with Debian's packages (no network):

    apt-get install -y python3-torch python3-sklearn
    /usr/bin/python3 models/train_digits.py --out models/digits

Writes into --out:
  model.onnx          the float32 network, input 'image' float32[N, 1, 8, 8] (pixels / 16), output 'logits' float32[N, 10]
  calib.npy           float32[256, 1, 8, 8]: the first 256 training images (calibration data)
  test_images.npy     float32[n, 1, 8, 8]: the held-out half of the set (stratified, seed 0)
  test_labels.npy     int64[n]
  manifest.json       split, architecture, training settings and curve, fp32 test accuracy (torch), versions
"""
import argparse
import json
import os
import time

import numpy as np
import sklearn
import torch
import torch.nn as nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


class DigitsCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.conv4 = nn.Conv2d(128, 128, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.conv3(x))
        x = torch.relu(self.conv4(x)) + x  # a residual connection (an Add for QLinearAdd)
        x = torch.flatten(self.gap(x), 1)
        return self.fc(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models/digits")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.5, random_state=args.seed, stratify=y)

    model = DigitsCnn()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    xt = torch.from_numpy(x_train)
    yt = torch.from_numpy(y_train)
    curve = []
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xt))
        total = 0.0
        for i in range(0, len(xt), 32):
            idx = perm[i : i + 32]
            # Light augmentation: one-pixel shifts.
            xb = torch.roll(xt[idx], shifts=(int(np.random.randint(-1, 2)), int(np.random.randint(-1, 2))), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        curve.append({"epoch": epoch, "loss": round(total / len(xt), 5)})
    seconds = time.time() - t0

    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x_test)).numpy()
    accuracy = float((logits.argmax(1) == y_test).mean())
    print(f"fp32 test accuracy {accuracy * 100:.2f}% on {len(y_test)} images ({seconds:.1f} s training)")

    path = os.path.join(args.out, "model.onnx")
    torch.onnx.export(
        model,
        torch.from_numpy(x_test[:2]),
        path,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
        do_constant_folding=True,
    )
    np.save(os.path.join(args.out, "calib.npy"), x_train[:256])
    np.save(os.path.join(args.out, "test_images.npy"), x_test)
    np.save(os.path.join(args.out, "test_labels.npy"), y_test)
    manifest = {
        "generator": "/usr/bin/python3 models/train_digits.py --out models/digits",
        "data": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits, 1797 8x8 images), pixels / 16",
        "split": {"test_size": 0.5, "stratify": True, "random_state": args.seed, "train": len(y_train), "test": len(y_test)},
        "calib": {"file": "calib.npy", "images": 256, "from": "the first 256 training images"},
        "architecture": "conv3x3(1->32)+relu, conv3x3(32->64)+relu, maxpool2, conv3x3(64->128)+relu, conv3x3(128->128)+relu + residual, global average pool, linear(128->10)",
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "training": {"epochs": args.epochs, "batch": 32, "optimizer": "Adam lr 2e-3, cosine", "augmentation": "one-pixel shifts", "seed": args.seed, "seconds": round(seconds, 1), "curve": curve},
        "fp32_test_accuracy_torch": accuracy,
        "versions": {"torch": torch.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__},
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)


if __name__ == "__main__":
    main()
