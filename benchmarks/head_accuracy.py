"""Accuracy of DTPnet's two heads with the same weights, on the synthetic test split.

The "full" head upsamples the D logit planes ×4 and regresses at full resolution; the "fast" head
regresses at 1/4 resolution and upsamples the disparity map. Both read the same weights, so a
checkpoint trained with one can run with the other. Writes docs/results/head-accuracy.json.

Usage:
    python benchmarks/head_accuracy.py [--checkpoints LABEL=PATH ...] [--output JSON]
"""

import argparse
import sys
from typing import List, Optional

import torch

from dtp_stereo.tools.bench import write_report
from dtp_stereo.checkpoint import load_model
from training.evaluation import SYNTHETIC_TEST, evaluate_model, synthetic_test_split

DEFAULT = ("shipped=models/dtpnet_pruned.pt", "kl_unpruned=runs/dtp_kl/distill/best.pt",
           "finetuned_full=runs/dtp_kl_full_ft/finetune/best.pt",
           "finetuned_fast=models/dtpnet_pruned_fast.pt")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", nargs="+", default=list(DEFAULT), help="LABEL=PATH ...")
    p.add_argument("--samples", type=int, default=50, help="test pairs (default 50)")
    p.add_argument("--output", default="docs/results/head-accuracy.json", help="JSON path")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    test = synthetic_test_split(args.samples)
    out = {"test_split": SYNTHETIC_TEST, "samples": args.samples}
    for item in args.checkpoints:
        label, path = item.split("=", 1)
        for head in ("full", "fast"):
            m, _ = load_model(path, overrides={"head": head})  # same weights, either head
            r = evaluate_model(m, test, args.samples)
            out[f"{label}_{head}"] = {k: r[k] for k in ("epe", "d1", "bad_1", "bad_2", "bad_3")}
            print(label, head, {k: round(r[k], 3) for k in ("epe", "d1", "bad_2")}, flush=True)
    write_report(args.output, out, threads=1, script="benchmarks/head_accuracy.py", argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
