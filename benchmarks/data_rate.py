"""Data-path throughput of a training config: pairs/s of render + augmentation, one process.

Builds ``data.train`` of a pipeline config exactly as the trainer does and times ``--samples``
items (render, augment, tensors) in this process (one thread), after one untimed item. With
``--metrics RUN/STAGE/metrics.csv`` it also reports the trainer's logged ``samples_per_s``
(median and p10/p90 over the logged steps) of a run of that config, so the two can be compared:
the data must not starve the trainer (the trainer reads with ``data.num_workers`` processes).

Usage (repository root)::

    .venv/bin/python benchmarks/data_rate.py --config configs/real/student_s1.yaml \\
        --samples 100 --metrics runs/real_s1/distill/metrics.csv \\
        --output docs/results/data-rate-s1.json
"""

import argparse
import csv
import statistics
import sys
import time
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    import numpy as np
    import torch

    from dtp_stereo.tools.bench import write_report
    from training.config import load_config, to_dict
    from training.data.datasets import build_dataset

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--metrics", default=None, help="a run's metrics.csv (trainer samples/s)")
    p.add_argument("--output", default=None)
    p.add_argument("overrides", nargs="*", metavar="key.path=value",
                   help="config overrides, as dtp-train takes them")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config(args.config, args.overrides)
    ds = build_dataset(cfg.data.train.spec())
    torch.manual_seed(0)
    ds[0]
    t0 = time.perf_counter()
    for i in range(1, args.samples + 1):
        ds[i]
    pairs_per_s = args.samples / (time.perf_counter() - t0)
    payload = {"config": args.config, "overrides": args.overrides,
               "train_spec": to_dict(cfg)["data"]["train"],
               "samples_timed": args.samples, "data_pairs_per_s_one_process": pairs_per_s,
               "num_workers": cfg.data.num_workers,
               "batch_size": cfg.distill.optim.batch_size}
    if args.metrics:
        with open(args.metrics, newline="") as fh:
            rates = [float(r["value"]) for r in csv.DictReader(fh)
                     if r["split"] == "train" and r["name"] == "samples_per_s"]
        if rates:
            payload["trainer_samples_per_s"] = {
                "median": statistics.median(rates), "p10": float(np.percentile(rates, 10)),
                "p90": float(np.percentile(rates, 90)), "logged_steps": len(rates),
                "metrics": args.metrics}
    print(f"data path: {pairs_per_s:.1f} pairs/s in one process"
          + (f"; trainer {payload['trainer_samples_per_s']['median']:.1f} samples/s (median)"
             if "trainer_samples_per_s" in payload else ""))
    if args.output:
        write_report(args.output, payload, threads=1, script="benchmarks/data_rate.py",
                     argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
