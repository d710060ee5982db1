#!/usr/bin/env python
"""Cost of the ``refine`` decoder: training step and inference time, side by side.

Builds DeepLabV3 (``--architecture``) with ``decoder="none"`` and ``decoder="refine"`` and
times, alternating between the two so that machine noise hits both alike:

- one AdamW training step on a batch of ``--batch`` x ``--crop``² px (forward, loss, backward);
- ``predict_proba`` on a ``--mpx``-sized image (eval mode, 1024 px windows).

Prints the median of ``--repeats`` runs and the ratio refine / none. Not a timed unit test:
figures go to docs/benchmarks.md. Usage::

    python tools/bench_decoder.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _bench import machine

from olmap.segment.infer import predict_proba
from olmap.segment.losses import segmentation_loss
from olmap.segment.model import Segmenter

DECODERS = ("none", "refine")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--architecture", default="deeplabv3_mobilenet_v3_large")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--side", type=int, default=1024, help="inference image side (px)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(0, 200, (args.batch, 1, args.crop, args.crop))).float()
    y = torch.from_numpy(rng.random((args.batch, args.crop, args.crop)) > 0.9).long()
    image = rng.uniform(0, 200, (args.side, args.side)).astype(np.float32)
    models = {d: Segmenter(args.architecture, 2, decoder=d) for d in DECODERS}
    opts = {d: torch.optim.AdamW(m.parameters(), lr=1e-4) for d, m in models.items()}
    step = {d: [] for d in DECODERS}
    infer = {d: [] for d in DECODERS}
    for _ in range(args.repeats + 1):  # the first round warms up and is dropped
        for d, model in models.items():
            model.train()
            t0 = time.perf_counter()
            loss = segmentation_loss(model(x)["out"], y, dice_weight=0.5)
            opts[d].zero_grad()
            loss.backward()
            opts[d].step()
            step[d].append(time.perf_counter() - t0)
            model.eval()
            t0 = time.perf_counter()
            predict_proba(model, image, window=1024, stride=512)
            infer[d].append(time.perf_counter() - t0)
    out = {"machine": machine(), "threads": args.threads, "architecture": args.architecture}
    for name, times in (("train_step_s", step), ("predict_s", infer)):
        med = {d: float(np.median(v[1:])) for d, v in times.items()}
        out[name] = {d: round(v, 3) for d, v in med.items()}
        out[name]["ratio_refine_none"] = round(med["refine"] / med["none"], 3)
    params = {d: sum(p.numel() for p in m.parameters()) for d, m in models.items()}
    out["decoder_parameters"] = params["refine"] - params["none"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
