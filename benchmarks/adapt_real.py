"""``dtp-train adapt`` on the real pairs with ground truth: before vs after vs SGBM (issue 10).

For each pair (and scale) the student is adapted on that pair's two images alone, written to a
folder as ``left/NAME`` + ``right/NAME`` (its ground truth never reaches adapt), with the
default settings unless given. Then, same run, on every pair: EPE / bad-2 of the starting and
the adapted model, and SGBM over the same range, raw (holes counted as errors) and hole-filled;
so the other pair's row shows what carries over to a scene adaptation never saw. Forgetting:
the synthetic test split (the first ``--synthetic`` images, 256×512, D = 192) before and after.
Real pairs are evaluation data: nothing here picks a checkpoint.

``--variant LABEL:key=value,...`` (repeatable) runs the adaptation once per variant with those
:class:`training.adapt.AdaptCfg` fields changed (``--variant default`` keeps the defaults), for
the loss ablation (``proxy_only:photometric_weight=0,smoothness_weight=0``,
``photometric_only:proxy=none``) and settings probes. Choosing defaults from these rows uses the
real pairs as validation data; the report says so.
``--keep DIR`` also keeps each adapted checkpoint (``adapted_LABEL_NAME_SCALE.pt``) for analyses
such as ``benchmarks/proxy_quality.py --checkpoint`` (errors split by proxy-label coverage).

Usage (repository root; ``dtp-stereo real-pairs --out data/real`` first)::

    .venv/bin/python benchmarks/adapt_real.py --checkpoint models/dtpnet_real.pt \\
        --pairs aloe@0.25 motorcycle@0.5 --output docs/results/adapt-real.json
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np


def _load(root: Path, spec: str):
    from dtp_stereo.data.formats import read_pfm
    from dtp_stereo.data.real_pairs import scale_pair

    name, _, scale = spec.partition("@")
    folder = root / name
    left = cv2.imread(str(folder / "im0.png"))[:, :, ::-1]
    right = cv2.imread(str(folder / "im1.png"))[:, :, ::-1]
    gt = read_pfm(folder / "disp0GT.pfm")
    factor = float(scale or 1.0)
    scaled = scale_pair(np.ascontiguousarray(left), np.ascontiguousarray(right), gt, factor)
    return (name, factor, *scaled)


def _score(predict, left, right, gt, d_max) -> Dict[str, float]:
    from dtp_stereo.metrics import stereo_metrics, valid_mask

    pred = predict(left, right)
    m = stereo_metrics(np.nan_to_num(pred, nan=-1.0), gt, valid_mask(gt, d_max))
    return {"epe": m["epe"], "bad_2": m["bad_2"]}


def parse_variant(text: str) -> Tuple[str, Dict[str, object]]:
    """``LABEL:key=value,...`` -> (label, AdaptCfg overrides typed like the defaults)."""
    import dataclasses

    from training.adapt import AdaptCfg

    label, _, body = text.partition(":")
    defaults = AdaptCfg()
    fields = {f.name for f in dataclasses.fields(AdaptCfg)}
    overrides: Dict[str, object] = {}
    for item in filter(None, body.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"adapt_real.py: --variant {text!r}: {item!r} is not FIELD=VALUE "
                             f"of AdaptCfg ({', '.join(sorted(fields))})")
        kind = type(getattr(defaults, key))
        if kind is tuple:  # crop: HxW; proxy_blocks: 3+5+7
            overrides[key] = tuple(int(v) for v in value.replace("+", "x").split("x"))
        elif kind is bool:  # proxy_pad=1 / true / 0 / false
            if value.lower() not in ("1", "true", "0", "false"):
                raise SystemExit(f"adapt_real.py: --variant {text!r}: {key} takes 1, true, 0 "
                                 "or false")
            overrides[key] = value.lower() in ("1", "true")
        else:
            overrides[key] = value if kind is str else kind(float(value)) if kind is int \
                else kind(value)
    AdaptCfg(**overrides)  # validates now, not after the first runs
    return label or "default", overrides


def main(argv: Optional[List[str]] = None) -> int:
    import torch

    from dtp_stereo.baselines import fill_invalid_background, sgbm_disparity
    from dtp_stereo.pipeline import StereoPipeline
    from dtp_stereo.tools.bench import write_report
    from training.adapt import AdaptCfg, adapt, load_folder_pairs
    from training.data.datasets import build_dataset
    from training.evaluation import evaluate_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--root", type=Path, default=Path("data/real"))
    p.add_argument("--pairs", nargs="+", default=["aloe@0.25", "motorcycle@0.5"],
                   help="NAME@SCALE pairs to adapt on (each also tested on all of them)")
    p.add_argument("--steps", type=int, default=AdaptCfg().steps)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--synthetic", type=int, default=20, help="synthetic test images (forgetting)")
    p.add_argument("--timing-pairs", type=int, default=0,
                   help="also time adapt with default settings on N synthetic 640x480 pairs")
    p.add_argument("--variant", action="append", default=None,
                   help="LABEL:key=value,... AdaptCfg fields changed for one run of every pair "
                        "(repeatable; default: one run with the defaults)")
    p.add_argument("--keep", type=Path, default=None,
                   help="also copy each adapted checkpoint into this folder (for analyses such "
                        "as benchmarks/proxy_quality.py)")
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args(argv)
    variants = [parse_variant(v) for v in (args.variant or ["default"])]
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    pairs = [_load(args.root, spec) for spec in args.pairs]
    base = StereoPipeline.from_checkpoint(args.checkpoint, threads=args.threads)
    d_max = base.max_disparity

    def sgbm(fill):
        def run(left, right):
            raw = sgbm_disparity(left, right, d_max, fill=False)
            return fill_invalid_background(raw, ~np.isfinite(raw)) if fill else raw
        return run

    test = build_dataset({"name": "synthetic", "split": "test", "size": 50, "height": 256,
                          "width": 512, "max_disparity": 192,
                          "synthetic": {"max_disparity_fraction": 0.3}})

    def synthetic(path) -> Dict[str, float]:
        from dtp_stereo.checkpoint import load_model

        model, _ = load_model(path)
        m = evaluate_model(model, test, args.synthetic, "cpu")
        return {k: m[k] for k in ("epe", "d1", "bad_2")}

    reference = {f"{n}@{s:g}": {"student": _score(base, l, r, g, d_max),
                                "sgbm_raw": _score(sgbm(False), l, r, g, d_max),
                                "sgbm_filled": _score(sgbm(True), l, r, g, d_max)}
                 for n, s, l, r, g in pairs}
    rows = []
    synthetic_before = synthetic(args.checkpoint)
    with tempfile.TemporaryDirectory(prefix="dtp_adapt_") as tmp:
        for name, scale, left, right, _ in pairs:
            folder = Path(tmp) / f"{name}@{scale:g}"
            for side, img in (("left", left), ("right", right)):
                (folder / side).mkdir(parents=True)
                cv2.imwrite(str(folder / side / f"{name}.png"), img[:, :, ::-1])
            for label, overrides in variants:
                settings = AdaptCfg(**{"steps": args.steps, **overrides})
                out = Path(tmp) / f"adapted_{label}_{name}_{scale:g}.pt"
                t0 = time.perf_counter()
                summary = adapt(Path(args.checkpoint), load_folder_pairs(folder), out, settings,
                                progress=False, tensorboard=False)
                seconds = time.perf_counter() - t0
                if args.keep is not None:
                    shutil.copy2(out, args.keep / out.name)
                adapted = StereoPipeline.from_checkpoint(out, threads=args.threads)
                tested = {f"{n}@{s:g}": {**reference[f"{n}@{s:g}"],
                                         "adapted": _score(adapted, l, r, g, d_max)}
                          for n, s, l, r, g in pairs}
                rows.append({"variant": label, "overrides": overrides,
                             "adapted_on": f"{name}@{scale:g}", "size": list(left.shape[:2]),
                             "adapt_seconds": round(seconds, 1), "adapt_summary": summary,
                             "tested": tested, "synthetic_after": synthetic(out)})
                print(f"[{label}] adapted on {name}@{scale:g} in {seconds:.0f} s:", flush=True)
                for key, row in tested.items():
                    scores = "  ".join(f"{m} {v['epe']:.2f}/{v['bad_2']:.1f}"
                                       for m, v in row.items())
                    print(f"  {key:16s} {scores}", flush=True)
    timing = None
    if args.timing_pairs:
        from dtp_stereo.data.synthetic import SyntheticStereo

        gen = SyntheticStereo(height=480, width=640, max_disparity=192, seed=11)
        with tempfile.TemporaryDirectory(prefix="dtp_adapt_vga_") as tmp:
            folder = Path(tmp) / "pairs"
            for side in ("left", "right"):
                (folder / side).mkdir(parents=True)
            for i in range(args.timing_pairs):
                sample = gen.sample(i)
                for side in ("left", "right"):
                    cv2.imwrite(str(folder / side / f"{i:04d}.png"), sample[side][:, :, ::-1])
            t0 = time.perf_counter()
            adapt(Path(args.checkpoint), load_folder_pairs(folder), Path(tmp) / "vga.pt",
                  AdaptCfg(steps=args.steps), progress=False, tensorboard=False)
            timing = {"pairs": args.timing_pairs, "size": [480, 640], "steps": args.steps,
                      "seconds": round(time.perf_counter() - t0, 1)}
        print(f"adapt on {args.timing_pairs} VGA pairs: {timing['seconds']:.0f} s", flush=True)
    report = {"checkpoint": args.checkpoint, "timing_vga": timing, "max_disparity": d_max,
              "steps": args.steps,
              "settings": AdaptCfg(steps=args.steps).__dict__, "threads": args.threads,
              "synthetic_before": synthetic_before, "synthetic_images": args.synthetic,
              "rows": rows, "note": "real pairs are evaluation data (validation for design "
              "choices); adapt sees only the images of the pair named in adapted_on"}
    if args.output:
        write_report(str(args.output), report, threads=args.threads,
                     script="benchmarks/adapt_real.py", argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
