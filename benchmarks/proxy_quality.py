"""How good are ``dtp-train adapt``'s SGBM proxy labels on the real pairs with ground truth?

For each pair (and scale): the labels that adapt would make (``training.adapt.proxy_labels`` over
the range ``fitted_proxy_range`` fits to the starting model's disparity, on the pair scaled to
adapt's default ``max_width`` as adapt scales it), then against the ground truth: the share of GT
pixels they cover, their EPE and bad-2 there, and the starting model's bad-2 on the covered
and on the uncovered pixels, with the uncovered pixels' share of its errors. A what-if figure,
not a bound: a model that matched the labels exactly where they exist and stayed as it is
elsewhere would reach ``bad2_if_labels_fitted`` (other losses may do better off the labels). An
analysis of evaluation data; nothing here trains or picks anything.

Usage (repository root; ``dtp-stereo real-pairs --out data/real`` first)::

    .venv/bin/python benchmarks/proxy_quality.py --checkpoint models/dtpnet_real_pruned_s3.pt \\
        --pairs aloe@0.25 motorcycle@0.5 --output docs/results/adapt-proxy-quality.json
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: benchmarks.adapt_real's pair loader
    sys.path.insert(0, str(ROOT))


def pair_quality(model, left: np.ndarray, right: np.ndarray, gt: np.ndarray,
                 d_max: int, block_sizes: Sequence[int] = (5,), proxy: str = "sgbm",
                 teacher=None, pad: bool = False) -> Dict[str, float]:
    """Proxy-label coverage and accuracy, and the model's errors on and off them (%, px);
    ``proxy``, ``teacher`` and ``pad`` as adapt's (``training.adapt.pair_proxy``). The left
    band (the columns left of the SGBM search range, which unpadded SGBM never labels) is
    reported apart."""
    from dtp_stereo.backends.torch_backend import TorchBackend
    from dtp_stereo.metrics import valid_mask
    from dtp_stereo.pipeline import StereoPipeline
    from training.adapt import fitted_proxy_range, pair_proxy

    # one forward pass: the model's disparity fits adapt's SGBM range and is scored below
    pred = StereoPipeline(TorchBackend(model, fuse_bn=False))(left, right)
    search = fitted_proxy_range(pred, d_max)
    labels, conf = pair_proxy(proxy, left, right, d_max, block_sizes=block_sizes,
                              sgbm_range=search, teacher=teacher, sgbm_pad=pad)
    valid = valid_mask(gt, d_max)
    band = np.zeros_like(valid)
    band[:, :search] = True
    covered = conf.astype(bool) & valid
    uncovered = valid & ~covered
    label_err, model_err = np.abs(labels - gt), np.abs(np.nan_to_num(pred, nan=-1e6) - gt)
    bad = (model_err > 2) & valid
    bad_if_fitted = ((label_err > 2) & covered) | (bad & uncovered)

    def pct(mask: np.ndarray, of: np.ndarray) -> float:
        return float(100.0 * mask.sum() / max(1, of.sum()))

    return {"proxy_range_px": int(search), "coverage_pct": pct(covered, valid),
            "proxy_epe_covered": float(label_err[covered].mean()) if covered.any() else None,
            "proxy_bad2_covered": pct((label_err > 2) & covered, covered),
            "model_bad2": pct(bad, valid), "model_bad2_covered": pct(bad & covered, covered),
            "model_bad2_uncovered": pct(bad & uncovered, uncovered),
            "uncovered_share_of_errors_pct": pct(bad & uncovered, bad),
            "bad2_if_labels_fitted": pct(bad_if_fitted, valid),
            "left_band_share_pct": pct(valid & band, valid),
            "left_band_coverage_pct": pct(covered & band, valid & band),
            "proxy_bad2_left_band": pct((label_err > 2) & covered & band, covered & band),
            "model_bad2_left_band": pct(bad & band, valid & band),
            "model_bad2_outside_band": pct(bad & ~band, valid & ~band)}


def main(argv: Optional[List[str]] = None) -> int:
    import torch

    from benchmarks.adapt_real import _load
    from dtp_stereo.assets import resolve_model
    from dtp_stereo.checkpoint import load_model
    from dtp_stereo.data.real_pairs import scale_pair
    from dtp_stereo.tools.bench import write_report
    from training.adapt import PROXY_SOURCES, AdaptCfg, load_proxy_teacher

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="default", help="starting model (name or file)")
    p.add_argument("--pairs", nargs="+", default=["aloe@0.25", "motorcycle@0.5"],
                   help="NAME@SCALE under --root")
    p.add_argument("--root", type=Path, default=Path("data/real"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--proxy-blocks", nargs="+", default=None, metavar="B[+B...]",
                   help="SGBM block-size sets to compare, e.g. 5 3 3+5+7 (default: adapt's)")
    p.add_argument("--proxy", nargs="+", default=["sgbm"],
                   choices=[s for s in PROXY_SOURCES if s != "none"],
                   help="proxy sources to compare (default: sgbm)")
    p.add_argument("--proxy-teacher", default="", help="the teacher of the teacher proxies")
    p.add_argument("--proxy-pad", nargs="+", choices=("off", "on"), default=None,
                   help="SGBM on unpadded and/or left-padded images (default: adapt's)")
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args(argv)
    if any("teacher" in s for s in args.proxy) != bool(args.proxy_teacher):
        p.error("--proxy-teacher is needed by, and only by, the teacher proxies")
    teacher = load_proxy_teacher(args.proxy_teacher) if args.proxy_teacher else None
    torch.set_num_threads(args.threads)
    model, ckpt = load_model(resolve_model(args.checkpoint))
    model.eval()
    rows: Dict[str, Dict[str, object]] = {}
    max_width = AdaptCfg().max_width
    block_sets = [tuple(int(b) for b in text.split("+")) for text in args.proxy_blocks] \
        if args.proxy_blocks else [AdaptCfg().proxy_blocks]
    for blocks in block_sets:
        AdaptCfg(proxy_blocks=blocks)  # validates
    pads = [v == "on" for v in args.proxy_pad] if args.proxy_pad else [AdaptCfg().proxy_pad]
    for spec in args.pairs:
        _, _, left, right, gt = _load(args.root, spec)
        if left.shape[1] > max_width:  # as adapt scales it (INTER_AREA), the GT with it
            left, right, gt = scale_pair(left, right, gt, max_width / left.shape[1])
        for proxy in args.proxy:
            for blocks in block_sets:
                for pad in pads:
                    key = spec
                    if len(block_sets) > 1:
                        key += f" blocks {'+'.join(map(str, blocks))}"
                    if len(args.proxy) > 1:
                        key += f" proxy {proxy}"
                    if len(pads) > 1:
                        key += f" pad {'on' if pad else 'off'}"
                    rows[key] = pair_quality(model, left, right, gt, int(ckpt.max_disparity),
                                             blocks, proxy, teacher, pad)
                    print(key, {k: round(v, 2) if isinstance(v, float) else v
                                for k, v in rows[key].items()}, flush=True)
    if args.output:
        write_report(str(args.output), {"checkpoint": args.checkpoint, "pairs": rows,
                                        "proxy_teacher": args.proxy_teacher or None,
                                        "note": "analysis of evaluation data (real pairs); "
                                                "adapt never sees the ground truth"},
                     threads=args.threads, script="benchmarks/proxy_quality.py", argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
